"""Chains sharded across 4 simulated devices give the same draws as on one device."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from mixtures import run_nuts

SCRIPT = textwrap.dedent(
    """
    import json, jax, jax.numpy as jnp
    import numpyro, numpyro.distributions as dist
    from mixtures import run_nuts

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 3.0))
        with numpyro.plate("data", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = jnp.linspace(-1.0, 2.0, 9)
    res = run_nuts(model, y, key=jax.random.PRNGKey(7), num_warmup=60, num_samples=40,
                   num_chains=4)
    sharding = res.samples["mu"].sharding
    print(json.dumps({"n_devices": len(jax.devices()),
                      "n_shards": len(sharding.device_set),
                      "mu": res.samples["mu"].tolist()}))
    """
)


def _model(y):
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 3.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_nuts_chains_sharded_over_four_devices_match_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    assert payload["n_devices"] == 4 and payload["n_shards"] == 4
    with jax.enable_x64(True):
        y = jnp.linspace(-1.0, 2.0, 9)
    ref = run_nuts(
        _model, y, key=jax.random.PRNGKey(7), num_warmup=60, num_samples=40, num_chains=4
    )
    # identical per-chain arithmetic; only the placement differs: agree to rounding
    np.testing.assert_allclose(np.asarray(payload["mu"]), ref.samples["mu"], rtol=1e-9, atol=1e-9)
