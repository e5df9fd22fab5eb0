"""The layering promise: ``gp`` and ``gmm`` stand on the ``mixtures`` foundation.

- ``mixtures`` never imports ``gp`` or ``gmm`` (not even through ``importlib`` strings);
- ``gp`` and ``gmm`` do not re-define what the foundation has: a Gaussian-mixture or
  scale-mixture log density, an EM step, NIW algebra;
- no private name is imported from another module, and every API reference in a
  docstring names something public that exists.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("mixtures", "gp", "gmm")


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def test_mixtures_never_imports_gp_or_gmm():
    bad = []
    for path, tree in _modules("mixtures"):
        for module, line in _imported_modules(tree):
            if module.split(".")[0] in ("gp", "gmm"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
        # importlib strings such as "gp._demo_gp:run_demo"
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.match(r"^(gp|gmm)(\.[A-Za-z_]\w*)*(:\w+)?$", node.value.strip()):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} names {node.value!r}")
    assert not bad, "\n".join(bad)


def _foundation_names() -> set[str]:
    names: set[str] = set()
    for module in ("mixtures.distributions", "mixtures.em", "mixtures.niw"):
        names |= set(importlib.import_module(module).__all__)
    return names


# What a re-implementation of foundation maths looks like, by name of the function.
_FORBIDDEN_DEF = re.compile(
    r"(^|_)(e_step|m_step|fit_em|em_step|em_iteration|niw|log_evidence|hastings|"
    r"precision_chol\w*|log_?mixture\w*|mixture_log\w*|log_?gauss\w*|gauss\w*_?log\w*|"
    r"logpdf|log_student\w*|student_t_log_prob|log_normal_pdf)($|_)"
)
# Calls that only mixture / NIW maths needs.
_FORBIDDEN_CALLS = {
    "multigammaln": "the NIW normaliser: use mixtures.niw",
    "MixtureSameFamily": "a mixture distribution: use mixtures.distributions.GaussianMixture "
    "or ScaleMixtureNormal",
    "StudentT": "the Student-t: use mixtures.distributions.StudentT / student_t_from_inverse_gamma",
}


@pytest.mark.parametrize("package", ["gp", "gmm"])
def test_applications_do_not_redefine_foundation_maths(package):
    foundation = _foundation_names()
    bad = []
    for path, tree in _modules(package):
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                name = node.name
                if name in foundation or _FORBIDDEN_DEF.search(name.lower()):
                    bad.append(f"{where}:{node.lineno} defines {name}")
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if called in _FORBIDDEN_CALLS:
                    bad.append(f"{where}:{node.lineno} calls {called} ({_FORBIDDEN_CALLS[called]})")
    assert not bad, "\n".join(bad)


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for package in PACKAGES:
        for path, tree in _modules(package):
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    for alias in node.names:
                        if alias.name.startswith("_"):
                            bad.append(
                                f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} "
                                f"from {'.' * node.level}{node.module or ''}"
                            )
    assert not bad, "\n".join(bad)


_REF = re.compile(r":(?:func|class|meth|mod|data|attr):`~?((?:mixtures|gp|gmm)(?:\.\w+)+)`")


def _resolve(path: str):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def test_docstring_references_are_public_and_exist():
    bad = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for ref in _REF.findall(path.read_text()):
                where = f"{path.relative_to(ROOT)}: {ref}"
                if any(part.startswith("_") for part in ref.split(".")):
                    bad.append(f"{where} (private)")
                    continue
                try:
                    _resolve(ref)
                except (ImportError, AttributeError):
                    bad.append(f"{where} (does not exist)")
    assert not bad, "\n".join(bad)


def test_docstrings_cite_papers_not_unshipped_notes():
    pattern = re.compile(
        r"\bnote'?s?\b[ ,]*(section|sec\.|\d)|\(note\b|\bthe note\b|\bnote,|BENCHMARKS\.md"
        r"|diagnosis \d",
        re.IGNORECASE,
    )
    bad = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)
