"""Training curves as a PNG: matplotlib's object API on an Agg canvas (no display, no pyplot)."""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _series(history: list[dict], axis: str, layer: int,
            key: str) -> tuple[list[float], list[float]]:
    points = [(record[axis], record[key]) for record in history if record['layer'] == layer]
    return [p[0] for p in points], [p[1] for p in points]


def _plot_curve(ax, metrics: dict) -> None:
    """Test accuracy against training time, the final figure marked at the end."""
    curve = metrics['curve']
    minutes = [point['train_seconds'] / 60 for point in curve]
    accuracy = [point['test_accuracy'] for point in curve]
    ax.plot(minutes, accuracy, color='C2', marker='.',
            label=f"test, first {curve[-1]['samples']} images")
    final = metrics.get('test_accuracy')
    if final is not None:
        samples = metrics.get('test_samples')
        ax.plot([metrics.get('train_seconds', 0.0) / 60], [final], color='C3', marker='*',
                markersize=12, linestyle='none',
                label=f'test, {samples} images: {final:.4f}' if samples else f'test: {final:.4f}')
    low = min(accuracy + ([final] if final is not None else []))
    ax.set(title='accuracy against training time', xlabel='minutes of training',
           ylabel='accuracy', ylim=(max(0.0, low - 0.02), 1.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small', loc='lower right')


def plot_training(metrics: dict, path: str | Path) -> Path:
    """
    Per-layer loss, positive/negative goodness, and accuracy, side by side.

    The accuracy panel is the learning curve when the run has one (`curve`), else the
    final train and test accuracy.
    """
    history, axis = metrics['history'], metrics['history_axis']
    layers = sorted({record['layer'] for record in history})
    figure = Figure(figsize=(15, 4.2), layout='constrained')
    FigureCanvasAgg(figure)
    loss_ax, goodness_ax, accuracy_ax = figure.subplots(1, 3)
    for layer in layers:
        colour = f'C{layer % 10}'
        loss_ax.plot(*_series(history, axis, layer, 'loss'), color=colour, marker='.',
                     label=f'layer {layer}')
        goodness_ax.plot(*_series(history, axis, layer, 'goodness_pos'), color=colour, marker='.',
                         label=f'layer {layer} positive')
        goodness_ax.plot(*_series(history, axis, layer, 'goodness_neg'), color=colour, marker='.',
                         linestyle='--', label=f'layer {layer} negative')
    loss_ax.set(title='FF loss per layer', xlabel=axis, ylabel='loss')
    goodness_ax.set(title='mean goodness', xlabel=axis, ylabel='goodness')
    for ax in (loss_ax, goodness_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers

    if metrics.get('curve'):
        _plot_curve(accuracy_ax, metrics)
    else:
        names = ['train', 'test']
        values = [metrics.get('train_accuracy', 0.0), metrics.get('test_accuracy', 0.0)]
        bars = accuracy_ax.bar(names, values, color=['C7', 'C2'])
        accuracy_ax.bar_label(bars, labels=[f'{v:.4f}' for v in values])
        accuracy_ax.set(title='accuracy', ylim=(0, 1.05))
    about = [str(metrics[k]) for k in ('system', 'mode') if metrics.get(k)]  # e.g. DFF
    about.append(f"{metrics.get('train_seconds', 0.0):.0f} s training")
    figure.suptitle(f"{metrics.get('model', '')} ({', '.join(about)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
