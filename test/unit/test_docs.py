"""Documentation that is generated from code must match the code."""
from pathlib import Path

from dff_lifecycle.cli.params_doc import reference

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'configuration.md'


def test_parameter_reference_is_up_to_date():
    text = DOC.read_text(encoding='utf-8')
    embedded = text.split('<!-- params:begin -->\n', 1)[1].split('<!-- params:end -->', 1)[0]
    assert embedded == reference(), 'regenerate with: python -m dff_lifecycle.cli.params_doc'
