"""Plain-text tables: column widths, the rule line, trailing spaces."""
from dff_lifecycle.common.text_table import format_table


def test_columns_are_padded_to_the_widest_cell():
    text = format_table(('name', 'n'), [('a', '100'), ('longer', '2')])
    assert text.splitlines() == [
        'name    n',
        '------  ---',
        'a       100',
        'longer  2',
    ]


def test_columns_start_at_the_same_offset_on_every_line():
    lines = format_table(('x', 'yy', 'z'), [('abc', 'd', 'e'), ('f', 'ghij', 'k')]).splitlines()
    header, rule, *rows = lines
    starts = [header.index('yy'), header.index('z')]
    assert starts == [3 + 2, 3 + 2 + 4 + 2]  # widest cell plus two spaces
    assert [rows[0].index('d'), rows[0].index('e')] == starts
    assert [rows[1].index('ghij'), rows[1].index('k')] == starts
    assert [len(dashes) for dashes in rule.split('  ')] == [3, 4, 1]


def test_without_rule():
    text = format_table(('a', 'b'), [('1', '2')], rule=False)
    assert text.splitlines() == ['a  b', '1  2']


def test_no_trailing_spaces():
    text = format_table(('first', 'last'), [('a', ''), ('bbbbbbb', 'c')])
    lines = text.splitlines()
    assert all(line == line.rstrip() for line in lines)
    assert lines[2] == 'a'          # an empty last cell leaves no padding behind
    assert lines[3] == 'bbbbbbb  c'


def test_header_only_and_wide_header():
    assert format_table(('a', 'b'), []) == 'a  b\n-  -'
    assert format_table(('heading',), [('x',)]).splitlines() == ['heading', '-------', 'x']


def test_cells_are_turned_into_strings():
    assert format_table(('n', 'ok'), [(3, True)]).splitlines()[2] == '3  True'


def test_no_trailing_newline():
    assert not format_table(('a',), [('1',)]).endswith('\n')
