"""The `bioreactor-edge` command: run, scan, token, status, simulate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from . import __version__
from .advertise import Advertiser
from .agent import Agent
from .api import create_app
from .auth import load_or_create_token
from .bus import BusOwner, RawBus, SMBusRaw
from .clock_sync import system_clock_synced
from .config import ConfigError, default_config, load_config
from .discovery import SCAN_ADDRESSES, Place, ScanResult, identify_address, scan_places
from .drivers.base import Timing
from .identity import agent_id as hardware_agent_id
from .models import NewReading
from .sampler import cancel_and_wait
from .simulator.actuation import add_actuators
from .simulator.adapters import ADAPTERS, Adapter
from .simulator.control_wiring import ACTUATORS, PUMP_ADDRESS, loops_for
from .simulator.lab import STANDARD_SET, CatchUpClock, build_board_bus, build_reactor_bus
from .simulator.physics import CULTURES, Culture, ReactorModel
from .tls import CERT_FILE, TlsError, load_or_create_certificate, server_context
from .watchdog import Notifier

_LOGGER = logging.getLogger("bioreactor_edge")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.handler(args)
    except ConfigError as err:
        print(f"bioreactor-edge: invalid configuration: {err}", file=sys.stderr)
        return 2
    except TlsError as err:
        print(f"bioreactor-edge: HTTPS: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bioreactor-edge", description="Bioreactor edge agent")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the agent on this board's I2C buses")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.set_defaults(handler=_cmd_run)

    scan_cmd = commands.add_parser("scan", help="scan I2C buses and identify what answers")
    scan_cmd.add_argument("--config", type=Path, help="scan the configuration's reactors")
    scan_cmd.add_argument("--bus", type=int, default=1, help="bus number without --config")
    scan_cmd.add_argument(
        "--simulated", action="store_true", help="scan a simulated reactor bus instead"
    )
    scan_cmd.add_argument(
        "--board",
        choices=sorted(ADAPTERS),
        help="scan a simulated board as it comes (cape EEPROMs bound to the kernel, "
        "an unconfigured multiplexer at 0x70) behind this adapter model",
    )
    scan_cmd.set_defaults(handler=_cmd_scan)

    token = commands.add_parser("token", help="print the API token (created on first use)")
    where = token.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path)
    where.add_argument("--data-dir", type=Path)
    token.set_defaults(handler=_cmd_token)

    status = commands.add_parser(
        "status", help="live view of a running agent's sensors and journal"
    )
    status.add_argument("--config", type=Path, required=True)
    status.add_argument("--once", action="store_true", help="print one view and exit")
    status.add_argument("--every", type=float, default=2.0, help="refresh period in seconds")
    status.set_defaults(handler=_cmd_status)

    sim = commands.add_parser("simulate", help="run complete agents on simulated reactors")
    sim.add_argument("--data-dir", type=Path, required=True)
    sim.add_argument("--port", type=int, default=8420, help="first agent's port")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--token", help="API token for every agent (default: one per agent)")
    sim.add_argument("--agents", type=_positive_int, default=1)
    sim.add_argument("--sensors-per-reactor", type=_positive_int, default=8)
    sim.add_argument(
        "--rate", type=_positive_float, default=0.2, help="samples per second per sensor"
    )
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--advertise", action="store_true", help="announce agents over zeroconf")
    sim.add_argument(
        "--tls", action="store_true", help="serve HTTPS with each agent's self-signed certificate"
    )
    sim.add_argument(
        "--backdate-hours",
        type=_non_negative_float,
        default=0.0,
        help="start the agents' clock this many hours in the past (with --time-scale)",
    )
    sim.add_argument(
        "--time-scale",
        type=_at_least_one,
        default=1.0,
        help="run the backdated clock this many times faster until it reaches real time",
    )
    sim.add_argument(
        "--record",
        action="store_true",
        help="log every journaled reading to DATA_DIR/agent-N/generated.log (fault-test oracle)",
    )
    sim.add_argument(
        "--control",
        action="store_true",
        help="add relays, PWM outputs and the base pump with temperature and pH loops "
        "(needs the standard set's pump: --sensors-per-reactor 6 or more)",
    )
    sim.add_argument(
        "--cultures",
        type=_cultures,
        default=(),
        help=f"comma-separated cultures given to the agents in turn ({', '.join(CULTURES)}); "
        "each agent is named after its culture",
    )
    sim.set_defaults(handler=_cmd_simulate)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _cultures(text: str) -> tuple[Culture, ...]:
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in CULTURES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown culture {', '.join(unknown)} (known: {', '.join(CULTURES)})"
        )
    return tuple(CULTURES[name] for name in names)


def _at_least_one(text: str) -> float:
    value = float(text)
    if not value >= 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# -- run / simulate ----------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    agent = Agent(
        config,
        agent_id=hardware_agent_id(),
        raw_bus=SMBusRaw,
        clock_synced=system_clock_synced,
    )
    token = load_or_create_token(config.data_dir)
    context = _tls_context(config.data_dir) if config.api.tls else None
    asyncio.run(_serve([(agent, token, config.api.host, config.api.port, context)], advertise=True))
    return 0


def _tls_context(data_dir: Path) -> ssl.SSLContext:
    return server_context(load_or_create_certificate(data_dir))


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.control and args.sensors_per_reactor < _PUMP_SENSORS:
        print(
            f"bioreactor-edge: --control needs --sensors-per-reactor {_PUMP_SENSORS} or more "
            f"(the base pump, EZO-PMP 0x{PUMP_ADDRESS:02x}, is sensor {_PUMP_SENSORS})",
            file=sys.stderr,
        )
        return 2
    # The simulated chips answer `rate` times faster than real ones, never slower: the
    # register chips' drivers wait their datasheets' real delays, whatever the rate.
    speed = max(1.0, args.rate)
    timing = Timing().scaled(speed)
    clock = CatchUpClock(args.backdate_hours * 3600, args.time_scale)
    served = []
    for index in range(args.agents):
        data_dir = args.data_dir / f"agent-{index}"
        base = default_config(data_dir)
        culture = args.cultures[index % len(args.cultures)] if args.cultures else CULTURES["ecoli"]
        config = replace(
            base,
            name=f"{culture.name if args.cultures else 'Simulated'} bench {index + 1}",
            sampling=replace(base.sampling, interval_s=1 / args.rate),
        )
        if args.control:
            reactor = replace(config.reactors[0], actuators=ACTUATORS, loops=loops_for(culture))
            config = replace(config, reactors=(reactor,))
        seed = args.seed * 1000 + index
        token = args.token or load_or_create_token(data_dir)
        agent = Agent(
            config,
            agent_id=_simulated_agent_id(args.seed, index),
            raw_bus=_simulated_bus(seed, args.sensors_per_reactor, speed, args.control, culture),
            timing=timing,
            clock=clock,
            on_journaled=_recorder(data_dir / "generated.log") if args.record else None,
        )
        context = _tls_context(data_dir) if args.tls else None
        served.append((agent, token, args.host, args.port + index, context))
    asyncio.run(_serve(served, advertise=args.advertise))
    return 0


def _recorder(path: Path) -> Callable[[Sequence[NewReading]], None]:
    """Appends `sensor quantity time_ms value` per journaled reading; a killed
    process loses at most the lines of its last batch (the kernel keeps the rest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.open("a", encoding="utf-8")

    def record(readings: Sequence[NewReading]) -> None:
        log.write("".join(f"{r.sensor} {r.quantity} {r.time_ms} {r.value!r}\n" for r in readings))
        log.flush()

    return record


def _simulated_agent_id(seed: int, index: int) -> str:
    return hashlib.sha256(f"simulated agent {seed}/{index}".encode()).hexdigest()[:16]


# The standard set's chips up to and including the EZO-PMP the base pump uses.
_PUMP_SENSORS = STANDARD_SET.index(("pmp", PUMP_ADDRESS)) + 1


def _simulated_bus(
    seed: int,
    sensors: int,
    speed: float,
    control: bool = False,
    culture: Culture = CULTURES["ecoli"],
) -> Callable[[int], RawBus]:
    def factory(bus_number: int) -> RawBus:
        model = ReactorModel(seed=seed + bus_number, culture=culture)
        bus = build_reactor_bus(model, sensors=sensors, speed=speed, seed=seed + bus_number)
        if control:
            add_actuators(bus, model)
        return bus

    return factory


def _simulated_board(adapter: Adapter, speed: float) -> Callable[[int], RawBus]:
    def factory(bus_number: int) -> RawBus:
        model = ReactorModel(seed=bus_number)
        return build_board_bus(model, adapter=adapter, speed=speed, seed=bus_number)

    return factory


async def _serve(
    agents: list[tuple[Agent, str, str, int, ssl.SSLContext | None]], *, advertise: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runners: list[web.AppRunner] = []
    advertisers: list[Advertiser] = []

    async def serve_one(
        agent: Agent, token: str, host: str, port: int, context: ssl.SSLContext | None
    ) -> None:
        await agent.start()
        runner = web.AppRunner(create_app(agent, token), access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        _LOGGER.info(
            "agent %s (%s) serving %s://%s:%d/api/v1/, journal epoch %s",
            agent.agent_id,
            agent.name,
            "https" if context else "http",
            host,
            port,
            agent.journal.epoch,
        )
        if advertise:
            advertiser = Advertiser(
                agent_id=agent.agent_id, name=agent.name, port=port, tls=context is not None
            )
            advertisers.append(advertiser)
            await advertiser.start()

    # systemd (Type=notify): ready once every agent serves; kept alive while all respond.
    notifier = Notifier.from_environment()
    try:
        # In parallel: each agent serves while its discovery runs in the background.
        await asyncio.gather(*(serve_one(*served) for served in agents))
        if notifier is None:
            await stop.wait()
        else:
            notifier.send(f"READY=1\nSTATUS=serving {len(agents)} agent(s)")
            await _until(
                stop, notifier.keep_alive(lambda: all(agent.responsive() for agent, *_ in agents))
            )
    finally:
        if notifier is not None:
            notifier.send("STOPPING=1")
        for advertiser in advertisers:
            await advertiser.close()
        for runner in runners:
            await runner.cleanup()
        for agent, *_ in agents:
            await agent.stop()


async def _until(stop: asyncio.Event, job: Coroutine[Any, Any, None]) -> None:
    """Runs `job` until `stop` is set."""
    task = asyncio.create_task(job)
    try:
        await stop.wait()
    finally:
        await cancel_and_wait(task)


# -- token / status / scan ---------------------------------------------------


def _cmd_token(args: argparse.Namespace) -> int:
    """The token and, when the agent serves HTTPS, its certificate's fingerprint to pin."""
    config = load_config(args.config) if args.config else None
    data_dir = config.data_dir if config else args.data_dir
    print(load_or_create_token(data_dir))
    if config is None and not (data_dir / CERT_FILE).exists():
        return 0  # a data dir alone: show a certificate only if the agent made one
    if config is None or config.api.tls:
        certificate = load_or_create_certificate(data_dir)
        print(f"certificate SHA-256 fingerprint: {certificate.fingerprint}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    token = load_or_create_token(config.data_dir)
    # A wildcard listen address is reached locally over loopback.
    host = "127.0.0.1" if config.api.host in ("0.0.0.0", "::") else config.api.host  # noqa: S104
    scheme = "https" if config.api.tls else "http"
    url = f"{scheme}://{host}:{config.api.port}/api/v1/status"
    context = None
    if config.api.tls:
        # Trust exactly the agent's own certificate (its name is not the host's).
        certificate = load_or_create_certificate(config.data_dir)
        context = ssl.create_default_context(cafile=certificate.cert_path)
        context.check_hostname = False
    while True:
        try:
            # A fixed http(s) URL built from the config, never user-supplied schemes.
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
            with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
                view = render_status(json.load(response))
        except (OSError, urllib.error.URLError, ValueError) as err:
            view = f"agent at {url} not reachable: {err}"
        if args.once:
            print(view)
            return 0
        print("\033[2J\033[H" + view, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(asyncio.sleep(args.every))


def render_status(status: dict[str, Any]) -> str:
    """A technician's view of /api/v1/status."""
    journal = status["journal"]
    lines = [
        f"{status['name']}  agent {status['agent_id']}  firmware {status['firmware_version']}"
        f"  health {status['health']} {' '.join(status['problems'])}",
        f"journal epoch {journal['epoch']}  newest {journal['newest_seq']}  acked "
        f"{journal['acked_seq']}  pending {journal['pending']}  dropped {journal['dropped']}  "
        f"{journal['bytes'] / 1e6:.1f}/{journal['budget_bytes'] / 1e6:.0f} MB",
    ]
    for reactor in status["reactors"]:
        lines.append(f"\n[{reactor['id']}] {reactor['name']}  bus {reactor['bus']}")
        lines.append(f"  {'sensor':<22} {'addr':<5} {'status':<8} {'errors':>6}  values")
        for sensor in reactor["sensors"]:
            values = "  ".join(
                f"{q['key']}={q['value']:.3f}{q['unit'] and ' ' + q['unit']}"
                for q in sensor["quantities"]
                if q["value"] is not None
            )
            lines.append(
                f"  {sensor['id']:<22} 0x{sensor['address']:02x}  {sensor['status']:<8} "
                f"{sensor['error_count']:>6}  {values}"
            )
    return "\n".join(lines)


def _cmd_scan(args: argparse.Namespace) -> int:
    if args.config:
        config = load_config(args.config)
        targets = [(r.id, r.bus, r.mux_address, r.mux_channel) for r in config.reactors]
    else:
        targets = [(f"bus{args.bus}", args.bus, None, None)]
    speed = 5.0  # simulated chips answer this many times faster than real ones
    raw: Callable[[int], RawBus] = SMBusRaw
    if args.board:
        raw = _simulated_board(ADAPTERS[args.board], speed)
    elif args.simulated:
        raw = _simulated_bus(args.bus, 8, speed)
    timing = Timing().scaled(speed) if args.simulated or args.board else Timing()
    print(asyncio.run(scan_report(targets, raw, timing)))
    return 0


async def scan_report(
    targets: list[tuple[str, int, int | None, int | None]],
    raw: Callable[[int], RawBus],
    timing: Timing,
) -> str:
    """What `scan` prints: per reactor an i2cdetect grid, then what each address is."""
    out: list[str] = []
    buses: dict[int, BusOwner] = {}
    try:
        for _, bus_number, mux_address, _ in targets:
            if bus_number not in buses:
                buses[bus_number] = BusOwner(raw(bus_number), bus_number)
            if mux_address is not None:
                buses[bus_number].register_mux(mux_address)
        for bus_number, bus in buses.items():
            mine = [t for t in targets if t[1] == bus_number]
            places: list[Place] = [
                None if mux is None or channel is None else (mux, channel)
                for _, _, mux, channel in mine
            ]
            results = await scan_places(bus, places)
            for (reactor_id, _, mux_address, mux_channel), place in zip(mine, places, strict=True):
                channel = "" if place is None else f" mux 0x{mux_address:02x} channel {mux_channel}"
                out.append(f"{reactor_id}: bus {bus_number}{channel}")
                out.extend(scan_grid(results[place]))
                out.extend(
                    await _identification_rows(
                        bus, results[place], mux_address, mux_channel, timing
                    )
                )
    finally:
        for bus in buses.values():
            await bus.close()
    return "\n".join(out)


def scan_grid(result: ScanResult) -> list[str]:
    """i2cdetect's table: the address where a chip answered, `UU` where a kernel
    driver is bound, `--` where nothing answered, `??` where the probe failed."""
    lines = ["     " + " ".join(f"{column:2x}" for column in range(16))]
    for row in range(0, 0x80, 0x10):
        cells = []
        for address in range(row, row + 0x10):
            if address not in SCAN_ADDRESSES:
                cells.append("  ")
            elif address in result.found:
                cells.append(f"{address:02x}")
            elif address in result.kernel_owned:
                cells.append("UU")
            elif address in result.failed:
                cells.append("??")
            else:
                cells.append("--")
        lines.append(f"{row:02x}: " + " ".join(cells))
    return lines


async def _identification_rows(
    bus: BusOwner,
    result: ScanResult,
    mux_address: int | None,
    mux_channel: int | None,
    timing: Timing,
) -> list[str]:
    rows: dict[int, str] = {}
    for address in result.found:
        device = bus.device(address, mux_address=mux_address, mux_channel=mux_channel)
        found = await identify_address(device, timing=timing)
        identity = found.identity
        rows[address] = (
            f"{identity.kind:<8} {identity.model} {identity.firmware or ''}".rstrip()
            if identity is not None
            else f"{'unknown':<8} {found.reason}"
        )
    for address in result.kernel_owned:
        rows[address] = f"{'UU':<8} bound to a kernel driver: skipped, never written to"
    for address, why in result.failed.items():
        rows[address] = f"{'??':<8} probe failed: {why}"
    return [f"  0x{address:02x}  {rows[address]}" for address in sorted(rows)]
