"""Security properties that hold in the code and the installed middleware."""
from __future__ import annotations

import ast
from pathlib import Path
import subprocess

from dff_lifecycle.ros.environment import configure_environment
import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / 'dff_lifecycle').rglob('*.py')) + sorted(
    (REPO / 'benchmarks').glob('*.py'))


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Call):
            yield node


def test_no_eval_or_exec_anywhere():
    found = [f'{p.relative_to(REPO)}:{c.lineno}' for p in SOURCES for c in calls(p)
             if isinstance(c.func, ast.Name) and c.func.id in ('eval', 'exec')]
    assert not found


def test_every_torch_load_refuses_arbitrary_pickles():
    unsafe = []
    for path in SOURCES:
        for c in calls(path):
            if isinstance(c.func, ast.Attribute) and c.func.attr == 'load' and \
                    isinstance(c.func.value, ast.Name) and c.func.value.id == 'torch':
                safe = any(k.arg == 'weights_only' and isinstance(k.value, ast.Constant)
                           and k.value.value is True for k in c.keywords)
                if not safe:
                    unsafe.append(f'{path.relative_to(REPO)}:{c.lineno}')
    assert not unsafe


def test_discovery_stays_on_this_host_unless_asked():
    # LOCALHOST, run as SYSTEM_DEFAULT with a profile that peers with 127.0.0.1 only.
    env = configure_environment({})
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SYSTEM_DEFAULT'
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'].endswith('fastdds_localhost.xml')
    chosen = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}
    assert configure_environment(chosen)['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SUBNET'


def test_the_installed_fast_dds_has_no_security_plugins():
    """
    Record why no SROS2 test runs here (docs/reliability.md, "Security").

    The PyPI wheel's libfastdds is built without SECURITY: none of the builtin DDS
    Security plugins (PKI-DH authentication, access control, AES-GCM-GMAC) is in it.
    Should a later wheel have them, this fails: then add the keystore test.
    """
    import rclpy
    libs = list(Path(rclpy.__file__).resolve().parents[3].glob('libfastdds.so*')) or \
        list(Path(rclpy.__file__).resolve().parents[4].glob('lib/libfastdds.so*'))
    if not libs:
        pytest.fail('libfastdds not found next to rclpy')
    symbols = subprocess.run(['nm', '-D', '--defined-only', str(libs[0])], capture_output=True,
                             text=True, check=True).stdout
    for plugin in ('PKIDH', 'Permissions', 'AESGCMGMAC', 'SecurityManager'):
        assert plugin not in symbols, f'{libs[0]} has {plugin}: add the SROS2 keystore test'
