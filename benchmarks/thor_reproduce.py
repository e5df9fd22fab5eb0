"""THOR vs Switch vs dense on an offline translation-like task (Zuo et al., ICLR 2022).

Task (generated here, no download; babel / num2words are not installed, so the converters are
written below): English number words -> German number words split into morphemes, for
1 <= n < 1,000,000, e.g. "three hundred twenty one" -> "drei hundert ein und zwanzig". German
inverts units and tens ("ein und zwanzig"), uses "eins" only word-finally and "ein" before
"hundert" / "tausend" / "und", and has irregular stems ("sech zehn", "sieb zig", "dreißig").
20,000 training pairs (numbers drawn uniformly, seed 0). Two test sets of unseen numbers:

* ``iid``: numbers from the training distribution that are not in the training set;
* ``comp``: numbers whose thousands block ends in 7 (``(n // 1000) % 10 == 7``), a pattern that
  never occurs in training ("... sieben und zwanzig tausend", "sieb zehn tausend"), so it tests
  compositional generalisation rather than memorisation.

Word-level shared vocabulary (53 types); BLEU = sacrebleu corpus BLEU (13a tokeniser) over the
morpheme strings; accuracy = exact match of the whole output; greedy decoding.

Model and training (all arms): pre-LN encoder-decoder, 2 + 2 layers, d = 64, 4 heads,
d_ff = 128, tied embeddings; expert FFNs in layer 0 of the encoder and of the decoder (THOR's
``layer % 2 == 0`` rule); Adam (0.9, 0.98), peak lr 3e-3, inverse-sqrt schedule with 50 warm-up
steps, clip 1.0, dropout 0.1, label smoothing 0.1, batches of 64 pairs with teacher forcing.
The learning rate and warm-up were set so that the dense model learns the task clearly within
~300 steps (a first version used 40 steps with a 50-step warm-up, i.e. never reached the peak
rate, and learnt nothing).

Arms (Switch and THOR with the same E have the same expert parameters; dense = same FLOPs):

* ``dense``;
* ``switch2`` / ``switch4``: Switch top-1, aux loss a = 1e-2, capacity factor 1.25 in training,
  no token dropping at test;
* ``thor2a1``, ``thor2a5``, ``thor4a1``, ``thor4a5``: THOR (E in {2, 4}, alpha in {1, 5}), one
  random expert per layer per pass, two passes per step, CE + alpha * symmetric KL;
* extras (not in the default list): ``rdrop`` (THOR with E = 1 = R-Drop, alpha = 5) and
  ``random2`` / ``random4`` (random routing, one pass, no consistency loss).

THOR is decoded with a random expert per sentence (kept fixed through decoding, a true
per-sentence draw; the released script uses sentence level), a random expert per token, and the
deterministic "mean" of all experts (an extension, not in the paper); the random modes are
averaged over ``--draws`` inference seeds and their spread is reported.

Run (one process, everything)::

    python benchmarks/thor_reproduce.py --seeds 0 1 2 --json thor.json

Sharded (e.g. one process per group of arms) and merged::

    python benchmarks/thor_reproduce.py --arms dense switch2 --seeds 0 1 2 --json a.json
    python benchmarks/thor_reproduce.py --arms thor2a1 thor2a5 --seeds 0 1 2 --json b.json
    python benchmarks/thor_reproduce.py --merge a.json b.json

``--quick`` is a smoke run (150 steps, seed 0, 100 test sentences).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

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
    """Pairs, vocabulary and padded id arrays for the train / iid / comp splits."""
    rng = np.random.default_rng(seed)
    draw = rng.integers(1, 1_000_000, size=8 * (n_train + n_test))
    seen, train_nums, iid_nums = set(), [], []
    for n in (int(v) for v in draw):
        if (n // 1000) % 10 == 7 or n in seen:
            continue
        seen.add(n)
        if len(train_nums) < n_train:
            train_nums.append(n)
        elif len(iid_nums) < n_test:
            iid_nums.append(n)
        else:
            break
    comp_pool = np.array([n for n in range(1000, 1_000_000) if (n // 1000) % 10 == 7])
    comp_nums = [int(n) for n in rng.choice(comp_pool, size=n_test, replace=False)]
    nums = {"train": train_nums, "iid": iid_nums, "comp": comp_nums}
    pairs = {k: [(en_words(n), de_words(n)) for n in v] for k, v in nums.items()}
    every = [p for v in pairs.values() for p in v]
    vocab = ["<pad>", "<bos>", "<eos>"] + sorted(
        {w for s, t in every for w in (s + " " + t).split()}
    )
    ids = {w: i for i, w in enumerate(vocab)}
    src_len = max(len(s.split()) for s, _ in every)
    tgt_len = max(len(t.split()) for _, t in every) + 1

    def encode(split):
        src = np.zeros((len(pairs[split]), src_len), np.int32)
        tgt = np.zeros((len(pairs[split]), tgt_len + 1), np.int32)
        for r, (s, t) in enumerate(pairs[split]):
            sw, tw = s.split(), t.split()
            src[r, : len(sw)] = [ids[w] for w in sw]
            tgt[r, : len(tw) + 2] = [1] + [ids[w] for w in tw] + [2]
        return src, tgt

    return pairs, vocab, {k: encode(k) for k in pairs}, tgt_len


def detok(ids, vocab):
    return " ".join(vocab[i] for i in ids if i > 2)


def arm_table():
    """name -> (label, MoEConfig or None, train_transformer kwargs)."""
    from mixtures.experts import MoEConfig

    arms = {
        "dense": ("dense", None, {}),
        "rdrop": ("R-Drop (THOR E=1) a=5", MoEConfig(1, "random"), {"thor_alpha": 5.0}),
    }
    for e in (2, 4):
        arms[f"switch{e}"] = (
            f"Switch top-1 E={e}",
            MoEConfig(e, "topk", 1, 1.25),
            {"aux_alpha": 1e-2},
        )
        for a in (1, 5):
            arms[f"thor{e}a{a}"] = (
                f"THOR E={e} a={a}",
                MoEConfig(e, "random"),
                {"thor_alpha": float(a)},
            )
        arms[f"random{e}"] = (f"random routing E={e} (1 pass)", MoEConfig(e, "random"), {})
    return arms


DEFAULT_ARMS = ["dense", "switch2", "switch4", "thor2a1", "thor2a5", "thor4a1", "thor4a5"]


def eval_configs(cfg):
    moe = cfg.moe
    if moe is None:
        return {"-": cfg}
    if moe.router == "topk":
        return {"top-1": cfg._replace(moe=moe._replace(capacity_factor=None))}
    if moe.n_experts == 1:
        return {"mean": cfg._replace(moe=moe._replace(inference="mean"))}
    return {
        "sentence": cfg._replace(moe=moe._replace(inference="sequence")),
        "token": cfg._replace(moe=moe._replace(inference="token")),
        "mean (ext.)": cfg._replace(moe=moe._replace(inference="mean")),
    }


def run_arm(arm, seed, data, vocab, tgt_len, steps, draws, verbose=0):
    """Train one arm with one seed and evaluate every inference mode on both test sets."""
    import jax
    import sacrebleu

    from mixtures.experts import (
        TransformerConfig,
        count_parameters,
        greedy_decode,
        train_transformer,
    )

    label, moe, kw = arm_table()[arm]
    cfg = TransformerConfig(
        vocab_size=len(vocab),
        d_model=64,
        n_heads=4,
        d_ff=128,
        n_encoder_layers=2,
        n_decoder_layers=2,
        max_len=32,
        moe=moe,
        moe_every=2,
    )
    src_tr, tgt_tr = data["train"]
    rng = np.random.default_rng(seed)

    def batches(step):
        r = rng.integers(0, len(src_tr), size=64)
        return {"src": src_tr[r], "tgt_in": tgt_tr[r, :-1], "tgt_out": tgt_tr[r, 1:]}

    t0 = time.time()
    res = train_transformer(
        cfg,
        batches,
        n_steps=steps,
        key=jax.random.PRNGKey(seed),
        learning_rate=3e-3,
        warmup=50,
        label_smoothing=0.1,
        dropout_rate=0.1,
        verbose=verbose,
        **kw,
    )
    train_s = time.time() - t0
    out = {
        "arm": arm,
        "label": label,
        "seed": seed,
        "steps": steps,
        "params": count_parameters(res.params),
        "train_s": train_s,
        "loss_last50": float(np.mean(res.history["loss"][-50:])),
        "eval": {},
    }
    for split in ("iid", "comp"):
        src_te, _ = data[split]
        refs = [detok(t[1:], vocab) for t in data[split][1]]
        out["eval"][split] = {}
        for mode, ecfg in eval_configs(cfg).items():
            n_draws = draws if mode in ("sentence", "token") else 1
            bleu, acc = [], []
            for d in range(n_draws):
                ids = greedy_decode(
                    res.params, ecfg, src_te, tgt_len, key=jax.random.PRNGKey(1000 + d)
                )
                hyp = [detok(o, vocab) for o in ids]
                bleu.append(sacrebleu.corpus_bleu(hyp, [refs]).score)
                acc.append(100.0 * float(np.mean([h == r for h, r in zip(hyp, refs, strict=True)])))
            out["eval"][split][mode] = {"bleu": bleu, "acc": acc}
    out["total_s"] = time.time() - t0
    return out


def _ms(x):
    x = np.asarray(x, float)
    return f"{x.mean():.2f} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.2f}"


def print_tables(records):
    """Mean ± sd over training seeds (sd with ddof = 1) of the per-seed mean over draws."""
    order = list(arm_table())
    arms = sorted({r["arm"] for r in records}, key=order.index)
    print(
        "| arm | params | inference | seeds | BLEU iid | acc % iid | BLEU comp | acc % comp |"
        " sd over draws (BLEU comp) | train s (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arm in arms:
        rs = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"])
        for mode in rs[0]["eval"]["comp"]:
            cells = []
            for split in ("iid", "comp"):
                b = [np.mean(r["eval"][split][mode]["bleu"]) for r in rs]
                a = [np.mean(r["eval"][split][mode]["acc"]) for r in rs]
                cells += [_ms(b), _ms(a)]
            dsd = [np.std(r["eval"]["comp"][mode]["bleu"]) for r in rs]
            dsd_s = f"{np.mean(dsd):.2f}" if len(rs[0]["eval"]["comp"][mode]["bleu"]) > 1 else "-"
            print(
                f"| {rs[0]['label']} | {rs[0]['params']} | {mode} | {len(rs)} | "
                + " | ".join(cells)
                + f" | {dsd_s} | {np.median([r['train_s'] for r in rs]):.0f} |"
            )
    # THOR - Switch, paired by seed (same data order and initial key per seed)
    pairs = []
    for e in (2, 4):
        for a in (1, 5):
            pairs.append((f"thor{e}a{a}", f"switch{e}", "sentence"))
    lines = []
    for thor, sw, mode in pairs:
        rt = {r["seed"]: r for r in records if r["arm"] == thor}
        rsw = {r["seed"]: r for r in records if r["arm"] == sw}
        common = sorted(set(rt) & set(rsw))
        if not common:
            continue
        cells = []
        for split in ("iid", "comp"):
            for metric in ("bleu", "acc"):
                d = [
                    np.mean(rt[s]["eval"][split][mode][metric])
                    - np.mean(rsw[s]["eval"][split]["top-1"][metric])
                    for s in common
                ]
                cells.append(_ms(d))
        lines.append(
            f"| {rt[common[0]]['label']} - Switch E={sw[-1]} | {len(common)} | "
            + " | ".join(cells)
            + " |"
        )
    if lines:
        print("\nTHOR (random sentence) minus Switch top-1, paired by seed (mean ± sd):\n")
        print("| comparison | seeds | dBLEU iid | dacc iid | dBLEU comp | dacc comp |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 150 steps, seed 0")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 400)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    ap.add_argument("--arms", nargs="+", default=None, help=f"default {' '.join(DEFAULT_ARMS)}")
    ap.add_argument("--draws", type=int, default=3, help="inference seeds for random modes")
    ap.add_argument("--n-test", type=int, default=None, help="sentences per test set (500)")
    ap.add_argument("--json", type=pathlib.Path, default=None, help="write per-run records")
    ap.add_argument("--merge", type=pathlib.Path, nargs="+", default=None, help="print tables")
    ap.add_argument("--verbose", type=int, default=0)
    args = ap.parse_args()
    if args.merge:
        records = [r for p in args.merge for r in json.loads(p.read_text())]
        print_tables(records)
        return
    steps = args.steps or (150 if args.quick else 400)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    n_test = args.n_test or (100 if args.quick else 500)
    arms = args.arms or DEFAULT_ARMS
    unknown = set(arms) - set(arm_table())
    if unknown:
        raise SystemExit(f"unknown arms {sorted(unknown)}; choose from {list(arm_table())}")
    pairs, vocab, data, tgt_len = make_data(20_000, n_test)
    print(
        f"task: {len(pairs['train'])} train pairs, {n_test} iid + {n_test} comp test pairs, "
        f"vocab {len(vocab)}, e.g. {pairs['comp'][0]}; {steps} steps x 64, seeds {seeds}",
        flush=True,
    )
    records = []
    for arm in arms:
        for seed in seeds:
            r = run_arm(arm, seed, data, vocab, tgt_len, steps, args.draws, args.verbose)
            records.append(r)
            main_mode = (
                "sentence" if "sentence" in r["eval"]["comp"] else next(iter(r["eval"]["comp"]))
            )
            ev = r["eval"]["comp"][main_mode]
            print(
                f"  {r['label']} seed {seed}: comp BLEU {np.mean(ev['bleu']):.2f} "
                f"acc {np.mean(ev['acc']):.1f} % ({main_mode}); train {r['train_s']:.0f} s, "
                f"total {r['total_s']:.0f} s",
                flush=True,
            )
            if args.json is not None:
                args.json.write_text(json.dumps(records, indent=1))
    print()
    print_tables(records)


if __name__ == "__main__":
    main()
