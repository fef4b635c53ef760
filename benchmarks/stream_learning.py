"""
A model learnt from a stream of labelled images against the same images offline.

    python benchmarks/stream_learning.py [--config test/fixtures/mnist_serve.yaml]
        [--images 10000] [--rate 1000] [--replay 50]

Offline: dff_train's one-process training on the first --images MNIST training images,
one epoch (shuffled, as dff_train does). Stream: dff_image_publisher plays the same
images as dff_msgs/LabeledImage at --rate (reliable) to dff_learn, which trains each
batch as it fills; once without replay, once with --replay earlier images added to each
batch. Each model is scored on the whole MNIST test set. Writes
benchmarks/results/stream_learning_<stamp>.json and prints a table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import load_dataset
from dff_lifecycle.core.run.experiment import run_single_process
from dff_lifecycle.core.run.predictor import LocalPredictor, model_weight_dir
from dff_lifecycle.core.run.weights import load_state
from dff_lifecycle.ros.domain_lease import allocate_domain_id
from portable import REPO, scrub

RESULTS = REPO / 'benchmarks' / 'results'
BIN = Path(sys.executable).parent
LAYERS = REPO / 'params' / 'layers.yaml'


def accuracy(model, folder: Path, dataset) -> float:
    predicted = LocalPredictor(model, folder).scores(dataset.x_test).argmax(dim=1)
    return float((predicted == dataset.y_test).float().mean())


def stream(args, model, out: Path, replay: int, env: dict) -> dict:
    """dff_learn fed by dff_image_publisher; its weights' accuracy and what it trained on."""
    log = open(out.with_suffix('.log'), 'w')
    learn = subprocess.Popen([str(BIN / 'dff_learn'), '--ros-args',
                              '-p', f'model_config:={args.config}', '-p', f'weights:={out}',
                              '-p', 'autostart:=true', '-p', 'save_every_batches:=0',
                              '-p', f'replay_per_batch:={replay}'],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while 'dff_learn up' not in out.with_suffix('.log').read_text():
        if time.monotonic() > deadline or learn.poll() is not None:
            raise RuntimeError('dff_learn did not come up:\n'
                               + out.with_suffix('.log').read_text()[-1500:])
        time.sleep(0.2)
    started = time.perf_counter()
    subprocess.run([str(BIN / 'dff_image_publisher'), '--ros-args', '-p', 'source:=mnist',
                    '-p', 'split:=train', '-p', 'labeled:=true', '-p', f'count:={args.images}',
                    '-p', f'rate:={float(args.rate)}', '-p', 'reliability:=reliable',
                    '-p', 'depth:=100', '-p', 'wait_for_subscribers:=1'],
                   env=env, check=True, capture_output=True, timeout=args.images / args.rate
                   + 300)
    seconds = time.perf_counter() - started
    learn.send_signal(2)
    learn.wait(60)
    folder = model_weight_dir(out, model.name)
    batches = load_state(folder / 'layer_0.pt')['batches_seen']
    return {'seconds': round(seconds, 1), 'batches_trained': batches, 'replay_per_batch': replay,
            'folder': folder}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=str(REPO / 'test' / 'fixtures' / 'mnist_serve.yaml'))
    parser.add_argument('--images', type=int, default=10000)
    parser.add_argument('--rate', type=float, default=1000.0)
    parser.add_argument('--replay', type=int, default=50)
    args = parser.parse_args()
    model = load_model_config(args.config, load_layer_config(LAYERS))
    model = dataclasses.replace(model, training=dataclasses.replace(
        model.training, epochs=1, train_limit=args.images, test_limit=None))
    dataset = load_dataset('mnist', None, train_limit=args.images)
    env = {**os.environ, 'ROS_DOMAIN_ID': str(allocate_domain_id()),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'PYTHONUNBUFFERED': '1'}
    results = {}
    with tempfile.TemporaryDirectory(prefix='stream_learning_') as folder:
        tmp = Path(folder)
        started = time.perf_counter()
        run_single_process(model, dataset, 'cpu', out_dir=tmp / 'offline', progress=False,
                           log=lambda _text: None)
        results['offline (dff_train, 1 epoch)'] = {
            'seconds': round(time.perf_counter() - started, 1),
            'accuracy': accuracy(model, model_weight_dir(tmp / 'offline', model.name), dataset)}
        for replay in (0, args.replay):
            run = stream(args, model, tmp / f'stream_{replay}', replay, env)
            run['accuracy'] = accuracy(model, run.pop('folder'), dataset)
            results[f'stream, replay {replay}'] = run
            print(f'{run}', flush=True)
    print(f'\n{"how":<32} {"test accuracy":>13} {"seconds":>8}')
    for how, r in results.items():
        print(f'{how:<32} {r["accuracy"]:>13.4f} {r["seconds"]:>8}')
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f'stream_learning_{time.strftime("%Y%m%d_%H%M%S")}.json'
    path.write_text(json.dumps({
        'command': 'python benchmarks/stream_learning.py ' + ' '.join(sys.argv[1:]),
        'config': scrub(args.config), 'images': args.images, 'rate_hz': args.rate,
        'test_images': len(dataset.x_test), 'results': results}, indent=1))
    print(f'wrote {scrub(str(path))}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
