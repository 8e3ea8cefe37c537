"""Federated training of the pose network across a fleet of vehicles, on Flower.

"Federated Learning for Cross-view Geo-localization" (seed 000): vehicles train one
localization model together without shipping raw images — classical FedAvg of the whole
model, or sharing only the ground and satellite encoders while each vehicle keeps its head.

* `partition`   — the training pairs split across K vehicles by drive and area (non-IID)
* `sharing`     — which parameters travel under each strategy
* `settings`    — the run's settings (the Flower run config)
* `task`        — the pose network, local epochs, evaluation, checkpoints
* `strategy`    — the server's FedAvg over the shared arrays, recording what it receives
* `client_app`, `server_app` — the Flower ClientApp / ServerApp (`app/pyproject.toml`)
* `deployment`  — SuperLink + SuperNodes as processes on 127.0.0.1 (or the simulation engine)
* `runner`      — one federation end to end; `baselines`, `compare` — seed 000's four scenarios

Nothing here is imported by the vehicle runtime (torch and flwr are training dependencies).
"""
