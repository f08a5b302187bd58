"""Nothing in a file is ever executed: the library never unpickles, evals or loads unsafe YAML.

A grep over the source tree (not the tests, which build hostile files on purpose), so that a future
convenience like ``torch.load`` or ``np.load(..., allow_pickle=True)`` fails CI.
"""

from __future__ import annotations

import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src"
FORBIDDEN = {
    "pickle": re.compile(r"\b(c?pickle|dill|joblib|shelve|marshal)\b"),
    "torch.load": re.compile(r"\btorch\.(load|jit\.load)\b|\bweights_only\s*=\s*False"),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
    "yaml.load": re.compile(r"\byaml\.(load|unsafe_load|full_load)\s*\("),
    "__import__ / compile": re.compile(r"(?<![\w.])(__import__|compile)\s*\("),
}


def test_no_code_runs_from_a_file():
    hits = []
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for name, pattern in FORBIDDEN.items():
                if pattern.search(code):
                    hits.append(f"{path.relative_to(SOURCE)}:{number}: {name}: {line.strip()}")
    assert hits == []


def test_the_patterns_do_catch_what_they_should():
    samples = {"pickle": "import pickle", "torch.load": "torch.load(path)",
               "allow_pickle=True": "np.load(f, allow_pickle = True)", "eval/exec": "eval(text)",
               "yaml.load": "yaml.load(stream)", "__import__ / compile": "compile(src, 'f', 'exec')"}
    for name, sample in samples.items():
        assert FORBIDDEN[name].search(sample), name
    assert not FORBIDDEN["eval/exec"].search("model.eval()")
    assert not FORBIDDEN["pickle"].search("allow_pickle=False")
