"""Domain leases: never shared, and a released id rests before it is leased again."""
from __future__ import annotations

import os

from dff_lifecycle.ros import domain_lease


def test_a_released_id_is_not_leased_again_while_a_ghost_could_linger(tmp_path, monkeypatch):
    monkeypatch.setattr(domain_lease, 'LOCK_DIR', tmp_path)
    monkeypatch.setattr(domain_lease, '_leases', {})
    first = domain_lease.allocate_domain_id()
    second = domain_lease.allocate_domain_id()
    assert first != second  # held ones are never shared
    domain_lease.release_domain_id(first)
    third = domain_lease.allocate_domain_id()
    assert third not in (first, second)  # the released one rests (a killed peer's lease)
    for domain_id in (second, third):
        domain_lease.release_domain_id(domain_id)


def test_a_rested_id_is_leased_again_and_a_full_range_still_leases(tmp_path, monkeypatch):
    monkeypatch.setattr(domain_lease, 'LOCK_DIR', tmp_path)
    monkeypatch.setattr(domain_lease, '_leases', {})
    first = domain_lease.allocate_domain_id()
    domain_lease.release_domain_id(first)
    old = os.stat(tmp_path / f'{first}.lock').st_mtime - domain_lease.REST_S - 1
    os.utime(tmp_path / f'{first}.lock', (old, old))
    assert domain_lease.allocate_domain_id() == first  # the search starts there
    domain_lease.release_domain_id(first)
    monkeypatch.setattr(domain_lease, 'DOMAIN_IDS', range(first, first + 1))
    assert domain_lease.allocate_domain_id() == first  # resting, but the only one
    domain_lease.release_domain_id(first)
