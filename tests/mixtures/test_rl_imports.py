"""gymnasium is needed by mixtures.rl only: the other packages never import it, and
mixtures.rl without it names the extra to install."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import mixtures, mixtures.experts, mixtures.gradmix, mixtures.cli, gp, gmm
assert 'gymnasium' not in sys.modules, 'gymnasium was imported'
sys.modules['gymnasium'] = None  # every later import of gymnasium raises ImportError
try:
    import mixtures.rl
except ImportError as err:
    print(err)
else:
    raise SystemExit('mixtures.rl imported without gymnasium')
"""


def test_only_rl_needs_gymnasium_and_says_which_extra_to_install():
    proc = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "mixproc[rl]"' in proc.stdout
