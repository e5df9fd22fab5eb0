"""THOR vs Switch vs dense on an offline translation-like task (Zuo et al., ICLR 2022).

Task (generated here, no download; babel / num2words are not installed, so the converters are
written below): English number words -> German number words split into morphemes, for
1 <= n < 1,000,000, e.g. "three hundred twenty one" -> "drei hundert ein und zwanzig". German
inverts units and tens ("ein und zwanzig"), uses "eins" only word-finally and "ein" before
"hundert" / "tausend" / "und", and has irregular stems ("sech zehn", "sieb zig", "dreißig").
Numbers whose thousands block ends in 7 ((n // 1000) % 10 == 7) are held out for the test set,
so the test measures compositional generalisation (unseen "... sieben tausend" patterns), not
memorisation. Word-level shared vocabulary; BLEU (sacrebleu corpus BLEU, 13a tokeniser) is over
the morpheme strings; accuracy = exact match of the whole output.

Arms at equal parameters per expert count (encoder 2 + decoder 2 layers, d = 64, 4 heads,
d_ff = 128, experts in layers 0 of the encoder and decoder, THOR's ``layer % 2 == 0`` rule):
dense; Switch top-1 (aux a = 1e-2, capacity factor 1.25 in training, no dropping at test);
THOR (random expert per layer per pass, two passes, alpha in {1, 5}) with E in {2, 4}.
THOR is decoded with a random expert per sentence (fixed through decoding, the note's
"sentence_fixed"; mean and std over 3 inference seeds) and with the deterministic "mean" of all
experts (an extension, not in the paper).

Run: ``python benchmarks/thor_reproduce.py [--quick] [--steps S] [--seeds K]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import sacrebleu

from mixtures.experts import (
    MoEConfig,
    TransformerConfig,
    count_parameters,
    greedy_decode,
    train_transformer,
)

ONES = "zero one two three four five six seven eight nine".split()
TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
DE_ONES = "null eins zwei drei vier fünf sechs sieben acht neun".split()
DE_TEENS = [
    "zehn",
    "elf",
    "zwölf",
    "drei zehn",
    "vier zehn",
    "fünf zehn",
    "sech zehn",
    "sieb zehn",
    "acht zehn",
    "neun zehn",
]
DE_TENS = [
    "",
    "",
    "zwanzig",
    "dreißig",
    "vier zig",
    "fünf zig",
    "sech zig",
    "sieb zig",
    "acht zig",
    "neun zig",
]


def en_words(n: int) -> str:
    if n >= 1000:
        rest = n % 1000
        return en_words(n // 1000) + " thousand" + (" " + en_words(rest) if rest else "")
    if n >= 100:
        rest = n % 100
        return ONES[n // 100] + " hundred" + (" " + en_words(rest) if rest else "")
    if n >= 20:
        return TENS[n // 10] + (" " + ONES[n % 10] if n % 10 else "")
    return TEENS[n - 10] if n >= 10 else ONES[n]


def de_words(n: int, final: bool = True) -> str:
    if n >= 1000:
        rest = n % 1000
        return (
            de_words(n // 1000, final=False) + " tausend" + (" " + de_words(rest) if rest else "")
        )
    if n >= 100:
        rest = n % 100
        head = "ein" if n // 100 == 1 else DE_ONES[n // 100]
        return head + " hundert" + (" " + de_words(rest, final) if rest else "")
    if n >= 20:
        u = n % 10
        unit = ("ein" if u == 1 else DE_ONES[u]) + " und " if u else ""
        return unit + DE_TENS[n // 10]
    if n >= 10:
        return DE_TEENS[n - 10]
    return "ein" if (n == 1 and not final) else DE_ONES[n]


def make_data(n_train, n_test, seed=0):
    rng = np.random.default_rng(seed)
    test_pool = np.array([n for n in range(1000, 1_000_000) if (n // 1000) % 10 == 7])
    train_pool_n = rng.integers(1, 1_000_000, size=4 * n_train)
    train_nums = [int(n) for n in train_pool_n if (n // 1000) % 10 != 7][:n_train]
    test_nums = [int(n) for n in rng.choice(test_pool, size=n_test, replace=False)]
    pairs = {
        k: [(en_words(n), de_words(n)) for n in v]
        for k, v in (("train", train_nums), ("test", test_nums))
    }
    vocab = ["<pad>", "<bos>", "<eos>"] + sorted(
        {w for s, t in pairs["train"] + pairs["test"] for w in (s + " " + t).split()}
    )
    ids = {w: i for i, w in enumerate(vocab)}
    src_len = max(len(s.split()) for s, _ in pairs["train"] + pairs["test"])
    tgt_len = max(len(t.split()) for _, t in pairs["train"] + pairs["test"]) + 1

    def encode(split):
        src = np.zeros((len(pairs[split]), src_len), np.int32)
        tgt = np.zeros((len(pairs[split]), tgt_len + 1), np.int32)
        for r, (s, t) in enumerate(pairs[split]):
            sw, tw = s.split(), t.split()
            src[r, : len(sw)] = [ids[w] for w in sw]
            tgt[r, : len(tw) + 2] = [1] + [ids[w] for w in tw] + [2]
        return src, tgt

    return pairs, vocab, encode("train"), encode("test"), tgt_len


def detok(ids, vocab):
    return " ".join(vocab[i] for i in ids if i > 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    args = ap.parse_args()
    steps = args.steps or (40 if args.quick else 400)
    seeds = args.seeds or (1 if args.quick else 3)
    n_test = 100 if args.quick else 500
    pairs, vocab, (src_tr, tgt_tr), (src_te, tgt_te), tgt_len = make_data(20_000, n_test)
    refs = [t for _, t in pairs["test"]]
    print(
        f"task: {len(src_tr)} train / {len(src_te)} test pairs, vocab {len(vocab)}, "
        f"e.g. {pairs['test'][0]}; {steps} steps x 64, {seeds} seeds\n"
    )
    base = dict(
        vocab_size=len(vocab),
        d_model=64,
        n_heads=4,
        d_ff=128,
        n_encoder_layers=2,
        n_decoder_layers=2,
        max_len=32,
        moe_every=2,
    )
    arms = [
        ("dense", None, {}),
        ("Switch top-1 E=2", MoEConfig(2, "topk", 1, 1.25), {"aux_alpha": 1e-2}),
        ("Switch top-1 E=4", MoEConfig(4, "topk", 1, 1.25), {"aux_alpha": 1e-2}),
        ("THOR E=2 a=1", MoEConfig(2, "random"), {"thor_alpha": 1.0}),
        ("THOR E=2 a=5", MoEConfig(2, "random"), {"thor_alpha": 5.0}),
        ("THOR E=4 a=1", MoEConfig(4, "random"), {"thor_alpha": 1.0}),
        ("THOR E=4 a=5", MoEConfig(4, "random"), {"thor_alpha": 5.0}),
    ]
    print(
        "| arm | params | inference | BLEU (mean ± sd over seeds) | accuracy % | "
        "sd over inference draws | train s/run |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, moe, kw in arms:
        cfg = TransformerConfig(moe=moe, **base)
        if moe is not None and moe.router == "topk":
            eval_cfgs = {"top-1": cfg._replace(moe=moe._replace(capacity_factor=None))}
        elif moe is not None:
            eval_cfgs = {
                "random sentence": cfg._replace(moe=moe._replace(inference="sequence")),
                "mean (ext.)": cfg._replace(moe=moe._replace(inference="mean")),
            }
        else:
            eval_cfgs = {"-": cfg}
        scores = {m: [] for m in eval_cfgs}
        accs = {m: [] for m in eval_cfgs}
        draw_sd = []
        t_train = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)

            def batches(step, rng=rng):
                r = rng.integers(0, len(src_tr), size=64)
                return {"src": src_tr[r], "tgt_in": tgt_tr[r, :-1], "tgt_out": tgt_tr[r, 1:]}

            t0 = time.time()
            res = train_transformer(
                cfg,
                batches,
                n_steps=steps,
                key=jax.random.PRNGKey(seed),
                learning_rate=2e-3,
                warmup=50,
                label_smoothing=0.1,
                dropout_rate=0.1,
                verbose=0,
                **kw,
            )
            t_train.append(time.time() - t0)
            n_par = count_parameters(res.params)
            for mode, ecfg in eval_cfgs.items():
                n_draws = 3 if mode == "random sentence" else 1
                b_list, a_list = [], []
                for d in range(n_draws):
                    out = greedy_decode(
                        res.params, ecfg, src_te, tgt_len, key=jax.random.PRNGKey(1000 + d)
                    )
                    hyp = [detok(o, vocab) for o in out]
                    b_list.append(sacrebleu.corpus_bleu(hyp, [refs]).score)
                    a_list.append(100 * np.mean([h == r for h, r in zip(hyp, refs, strict=True)]))
                scores[mode].append(np.mean(b_list))
                accs[mode].append(np.mean(a_list))
                if n_draws > 1:
                    draw_sd.append(np.std(b_list))
        for mode in eval_cfgs:
            sd = f"{np.mean(draw_sd):.2f}" if mode == "random sentence" else "-"
            print(
                f"| {name} | {n_par} | {mode} | {np.mean(scores[mode]):.2f} ± "
                f"{np.std(scores[mode]):.2f} | {np.mean(accs[mode]):.1f} | {sd} | "
                f"{np.mean(t_train):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
