"""Linters as tests, as ros2/demos runs them.

ament's flake8 (its configuration: line length 99, google import order, the flake8
plugins it bundles), pep257 on the package, and xmllint on both package.xml files
against a schema of REP 149 format 3.
"""
from __future__ import annotations

from pathlib import Path
import shutil
import subprocess

from ament_flake8.main import main_with_errors as flake8_main
from ament_pep257.main import main as pep257_main
import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_TREES = ('dff_lifecycle', 'test', 'benchmarks', 'launch', 'setup.py')
MANIFESTS = ('package.xml', 'dff_msgs/package.xml')


@pytest.mark.linter
def test_flake8():
    rc, errors = flake8_main(argv=[str(REPO / tree) for tree in PYTHON_TREES])
    assert rc == 0, f'{len(errors)} flake8 finding(s):\n' + '\n'.join(errors)


@pytest.mark.linter
def test_pep257(capsys):
    rc = pep257_main(argv=[str(REPO / 'dff_lifecycle')])
    assert rc == 0, capsys.readouterr().out


@pytest.mark.linter
@pytest.mark.parametrize('manifest', MANIFESTS)
def test_xmllint(manifest):
    xmllint = shutil.which('xmllint')
    assert xmllint, 'xmllint is missing: scripts/setup.sh installs it (Debian libxml2-utils)'
    result = subprocess.run([xmllint, '--noout', '--nonet', '--schema',
                             str(Path(__file__).with_name('package_format3.xsd')),
                             str(REPO / manifest)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
