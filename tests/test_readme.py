"""The README's quickstart runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_quickstart_runs_as_written(capsys):
    text = README.read_text()
    section = text[text.index("## Quickstart"):text.index("\n## ", text.index("## Quickstart") + 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert "CRNNImageClassifier.from_preset" in code and "model.fit(" in code
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "crnn_tiny_rooks" in out and "'accuracy':" in out
