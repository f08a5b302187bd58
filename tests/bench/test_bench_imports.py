"""The core never imports the harness, and the CLI stays light with ``bench`` wired in."""

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_does_not_import_the_benchmark_harness():
    modules = loaded_after("import napari_sci, napari_sci.core.codec, napari_sci.core.metrics, "
                           "napari_sci.core.lazy")
    assert not [m for m in modules if m.startswith("napari_sci.bench")]


def test_cli_with_bench_stays_light():
    modules = {m.split(".")[0] for m in loaded_after("import napari_sci.cli; napari_sci.cli.build_parser()")}
    assert not modules & {"torch", "imagecodecs", "matplotlib", "qtpy", "napari"}
