"""gymnasium is needed by mixtures.rl only: the other packages never import it."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def test_other_packages_do_not_import_gymnasium():
    proc = _run(
        "import mixtures, mixtures.experts, mixtures.gradmix, mixtures.cli, gp, gmm; "
        "import sys; assert 'gymnasium' not in sys.modules, 'gymnasium was imported'"
    )
    assert proc.returncode == 0, proc.stderr


def test_rl_without_gymnasium_names_the_extra():
    # sys.modules[name] = None makes every later import of that name raise ImportError
    proc = _run(
        "import sys; sys.modules['gymnasium'] = None\n"
        "try:\n"
        "    import mixtures.rl\n"
        "except ImportError as err:\n"
        "    print(err)\n"
        "else:\n"
        "    raise SystemExit('mixtures.rl imported without gymnasium')\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "mixproc[rl]"' in proc.stdout
