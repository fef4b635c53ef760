"""The rmw and Fast DDS settings every DFF process starts with."""
from __future__ import annotations

import os
from pathlib import Path
import re
import tempfile
from typing import MutableMapping, Optional

#: Participant lease 3 s (Fast DDS: 20 s), so a killed process leaves the graph quickly.
FASTDDS_PROFILE = Path(__file__).with_name('fastdds_profile.xml')
#: rmw_fastrtps's LOCALHOST configuration with a 32 MiB shared-memory segment (and the lease).
FASTDDS_LOCALHOST_PROFILE = Path(__file__).with_name('fastdds_localhost.xml')
OUR_PROFILES = (str(FASTDDS_PROFILE), str(FASTDDS_LOCALHOST_PROFILE))


def configure_environment(
        environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """
    Set transport defaults (keeping explicit user choices); call before `rclpy.init`.

    Also usable on a copy of the environment for child processes.

    Discovery stays on this host unless ROS_AUTOMATIC_DISCOVERY_RANGE says otherwise.
    rmw_fastrtps configures LOCALHOST with a 512 KiB shared-memory segment, which DFF's
    batches overflow; unless the user names a Fast DDS profile of their own, LOCALHOST
    is therefore run as SYSTEM_DEFAULT with fastdds_localhost.xml, the same discovery
    and transports with a segment that holds the data in flight (see that file). The
    translation is stable: a child process configured again keeps it.
    """
    environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    # Secure by default: only this host's participants are discovered. Several hosts
    # (docs/multi_machine.md) say ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET themselves.
    scope = environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    chosen = (environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
              or environ.get('FASTRTPS_DEFAULT_PROFILES_FILE'))
    base = _our_base(Path(chosen)) if chosen else None
    if base is not None and str(base) != chosen:  # ours with another lease: kept for its scope
        environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(base)
        configure_environment(environ)
        if environ['FASTDDS_DEFAULT_PROFILES_FILE'] == str(base):
            environ['FASTDDS_DEFAULT_PROFILES_FILE'] = chosen
        return environ
    if chosen and chosen not in OUR_PROFILES:  # the user's own Fast DDS profile
        environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
        return environ
    if scope == 'LOCALHOST' or (scope == 'SYSTEM_DEFAULT'
                                and chosen == str(FASTDDS_LOCALHOST_PROFILE)):
        environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SYSTEM_DEFAULT'
        environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(FASTDDS_LOCALHOST_PROFILE)
        return environ
    # Across hosts, Fast DDS LARGE_DATA: UDP only for discovery, samples over shared
    # memory (same host) or TCP, so multi-MiB samples are never cut into lossy UDP
    # fragments (the emulated cluster says UDPv4 itself).
    environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
    environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(FASTDDS_PROFILE)
    return environ


#: Where `with_participant_lease` writes its variants of our profiles (one file per variant).
DERIVED_PROFILES = Path(tempfile.gettempdir()) / 'dff_fastdds'
_LEASE = re.compile(r'<leaseDuration><sec>\d+</sec></leaseDuration>')


def _our_base(profile: Path) -> Optional[Path]:
    """Return our profile that `profile` is, or is a lease variant of; None: the user's."""
    if str(profile) in OUR_PROFILES:
        return profile
    if profile.parent == DERIVED_PROFILES:
        name = profile.name.split('.lease', 1)[0] + '.xml'
        return next((Path(p) for p in OUR_PROFILES if Path(p).name == name), None)
    return None


def with_participant_lease(lease_s: int,
                           environ: MutableMapping[str, str] = os.environ) -> Path:
    """
    Give this process's DDS participants a lease of `lease_s` (after configure_environment).

    The lease is what each participant announces: the others drop it after that long without
    a word from it. Servers keep the 3 s of our profiles, so a dead server leaves the graph at
    once; the master takes a longer one, so the containers do not drop a master that was
    merely stopped for a few seconds (a returning participant that others dropped is
    rediscovered from one side only: tens of seconds, or never; docs/reliability.md). The
    variant of the process's profile is written once under DERIVED_PROFILES. A profile of the
    user's own is left alone. Returns the profile in use.
    """
    named = (environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
             or environ.get('FASTRTPS_DEFAULT_PROFILES_FILE'))
    chosen = Path(named) if named else FASTDDS_PROFILE
    base = _our_base(chosen)
    if base is None:
        return chosen
    text, count = _LEASE.subn(f'<leaseDuration><sec>{int(lease_s)}</sec></leaseDuration>',
                              base.read_text(encoding='utf-8'))
    if count != 1:
        raise RuntimeError(f'{base} sets no single participant lease')
    target = DERIVED_PROFILES / f'{base.stem}.lease{int(lease_s)}s.xml'
    try:
        if not target.is_file() or target.read_text(encoding='utf-8') != text:
            DERIVED_PROFILES.mkdir(parents=True, exist_ok=True)
            scratch = target.with_name(f'.{target.name}.{os.getpid()}')
            scratch.write_text(text, encoding='utf-8')
            os.replace(scratch, target)  # whole, for every process that reads it meanwhile
    except OSError:  # no writable temporary folder: keep the profile's own lease
        return chosen
    environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(target)
    return target
