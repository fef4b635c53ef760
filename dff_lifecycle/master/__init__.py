"""
The master coordinator, split by job.

Modules:

    parameters       the master's parameter table (no torch, no rclpy)
    plan             which layer runs where, under which names and topics (pure)
    lifecycle_manager nav2-style bring-up and teardown over an ordered node list
    deployer         discover servers, create layers, bring up, tear down
    pipeline_io      the master's publishers and subscriptions on the pipeline
    pipeline_watch   what the master knows of a running pipeline (fed by callbacks)
    streaming        windowed streaming with resends and pauses (pure, injected clock)
    supervisor       liveness of the deployed layers (where recovery will live)
    inference        distributed inference: label scores and features of x
    training         the training run: batches out, per-epoch history back
    run_progress     epochs, batches and time left of a training run; a rate limit (pure)
    configs          the model of a run: configs, epochs, seed, overrides, checked
    run              one deployed run (deploy, train, save, evaluate, tear down; cancel)
    train_action     the /dff/train action: one goal at a time, feedback, results
    master_node      the thin node: parameters and commands
"""
