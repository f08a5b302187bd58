"""README's two set-up commands must stay the ones CI runs."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    test_line = ci_lines[ci_lines.index("# README's test command:") + 1]
    assert f"```bash\n{test_line}\n```" in readme


def test_readme_install_command_matches_ci_install_steps():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0" in readme
    assert ".venv/bin/pip install -q torch==2.13.0" in ci
    assert 'pip install -q -e ".[all]"' in readme
    assert 'pip install -q -e ".[all]"' in ci
    assert "src/napari_sci/data/mri_t1_colin27_crop.tif" in readme
    assert (REPO / "src/napari_sci/data/mri_t1_colin27_crop.tif").exists()
