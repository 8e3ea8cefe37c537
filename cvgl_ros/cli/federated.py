"""`cvgl federated`: train the pose network across a fleet with Flower; `compare` the scenarios of seed 000.

    cvgl federated --strategy encoders --clients 4 --rounds 7 --local-epochs 1 --data DS --out runs/fleet
    cvgl federated compare --clients 4 --rounds 7 --data DS --out runs/compare
"""
from __future__ import annotations


from cvgl_ros.cli.args import add_force, claim_out, non_negative_int, positive_float, positive_int

RUN_NAMES = ("server", "vehicles", "flower", "logs", "summary.json", "comparison.md", "comparison.json",
             "recall_vs_round.png", "single", "fedavg", "encoders", "centralized")


def _settings(args, strategy: str):
    from cvgl_ros.federated.settings import FederationSettings

    claim_out(args, f"federated {args.action}", "dir", inputs=[args.data, args.config], names=RUN_NAMES, in_place=True)
    min_available = args.min_clients if args.min_clients is not None else min(2, args.clients)
    return FederationSettings(
        strategy=strategy, vehicles=args.clients, rounds=args.rounds, local_epochs=args.local_epochs,
        data=str(args.data), config_file=str(args.config) if args.config else "", out=str(args.out),
        min_available=min_available, join_timeout_s=args.join_timeout_s, round_timeout_s=args.round_timeout_s,
        straggler_timeout_s=args.straggler_timeout_s, max_train_pairs=args.max_train_pairs,
        max_eval_pairs=args.max_eval_pairs, eval_split=args.eval_split, evaluate_every=args.evaluate_every,
        seed=args.seed,
    ).runnable()


def _run(args) -> int:
    from cvgl_ros.federated.runner import run_federation

    if args.action == "compare":
        return _compare(args)
    summary = run_federation(_settings(args, args.strategy), engine=args.engine)
    for row in summary["rounds"]:
        m = row["metrics"]
        recalls = (f"lateral<5m {m['lateral_recall_5m']:.1f} %, angle<5° {m['azimuth_recall_5deg']:.1f} %"
                   if "lateral_recall_5m" in m else "not evaluated")
        print(f"round {row['round']}: {row['vehicles_answered']} vehicle(s), sent {row['uplink_bytes_per_vehicle']} B "
              f"and received {row['downlink_bytes_per_vehicle']} B per vehicle, {row['wall_s']:.1f} s, {recalls}")
    print(f"wrote {args.out}/summary.json")
    return 0


def _compare(args) -> int:
    from cvgl_ros.federated.compare import render_markdown, run_compare

    comparison = run_compare(_settings(args, "fedavg"), engine=args.engine)
    print(render_markdown(comparison))
    print(f"wrote {args.out}/comparison.md, comparison.json, recall_vs_round.png")
    return 0


def register(subparsers) -> None:
    from cvgl_ros.federated.settings import DEFAULT_LOCAL_EPOCHS, DEFAULT_ROUNDS, DEFAULT_VEHICLES
    from cvgl_ros.federated.sharing import STRATEGIES

    p = subparsers.add_parser(
        "federated", help="federated training on Flower (fedavg | encoders); `compare` the scenarios of seed 000",
        description="Train the pose network across a fleet of vehicles with Flower: a SuperLink and one SuperNode "
                    "per vehicle on 127.0.0.1 (or Flower's simulation engine). `cvgl federated compare` also "
                    "trains the centralized and single-vehicle baselines with the same budget and writes "
                    "Tables I-II of seed 000, bytes and wall time per round, and recall against round.")
    p.add_argument("action", nargs="?", choices=("run", "compare"), default="run",
                   help="run one federation (default) or compare single/fedavg/encoders/centralized")
    p.add_argument("--strategy", choices=STRATEGIES, default="fedavg",
                   help="fedavg: the whole model; encoders: only the ground and satellite encoders are shared")
    p.add_argument("--clients", type=positive_int, default=DEFAULT_VEHICLES, help="vehicles in the fleet")
    p.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS, help="communication rounds T")
    p.add_argument("--local-epochs", type=positive_int, default=DEFAULT_LOCAL_EPOCHS, help="local epochs per round")
    p.add_argument("--data", required=True, help="pair data set (cvgl sim pairs / cvgl import), split by drive")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", help="model/training YAML (model: and train: sections), e.g. config/train_pose.yaml")
    p.add_argument("--engine", choices=("deployment", "simulation"), default="deployment",
                   help="deployment: SuperLink + SuperNodes as processes on 127.0.0.1; simulation: Flower's "
                        "simulation engine (Ray)")
    p.add_argument("--min-clients", type=positive_int, default=None,
                   help="vehicles that must be connected (and answer) for a round to go on (default 2)")
    p.add_argument("--max-train-pairs", type=non_negative_int, default=0, help="cap per vehicle (0 = all)")
    p.add_argument("--max-eval-pairs", type=non_negative_int, default=0, help="cap of the evaluation split (0 = all)")
    p.add_argument("--eval-split", default="cross_area", choices=("cross_area", "same_area", "val", "train"),
                   help="split the models are evaluated on after every round (seed 000: a new area)")
    p.add_argument("--evaluate-every", type=positive_int, default=1,
                   help="evaluate after every k-th round (and after the last)")
    p.add_argument("--join-timeout-s", type=positive_float, default=120.0,
                   help="how long round 1 waits for every vehicle to connect")
    p.add_argument("--round-timeout-s", type=positive_float, default=3600.0, help="longest wait for a round's replies")
    p.add_argument("--straggler-timeout-s", type=positive_float, default=300.0,
                   help="once --min-clients vehicles answered, how long to wait for the others")
    p.add_argument("--seed", type=non_negative_int, default=0)
    add_force(p, "server/, vehicles/, flower/, logs/, the scenario folders and the summary/comparison files "
                 "in the run directory")
    p.set_defaults(func=_run)

