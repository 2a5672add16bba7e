"""HTML report of traininversionmodel: comparison table, predicted-vs-measured scatter plots (as
Fig. 9 of Cheng et al. 2023), the CNN's training loss and a map of the train/test split."""
import html
import json

import numpy as np

from ..report import page
from .cnn import CHOICES as CNN_CHOICES
from .training import MODEL_NAMES

PAPER_NOTE = ('Cheng et al. (2023) report for their CNN on GF-2 (ion-adsorption rare-earth ore, '
              'RE2O3 %) train R² 0.95 / RPD 4.65 and test R² 0.91 / RPD 3.33 (their Fig. 9), on a '
              'random 2:1 split of surface-to-surface samples. A random split of densified, '
              'neighbouring samples lets near-duplicates into both sets; a spatial-block split '
              'gives the more honest figure. The paper takes R² >= 0.9 with RPD >= 3 as a good model; '
              'elsewhere RPD > 2 is often read as good and 1.4-2 as fair (Chang et al. 2001).')
METRIC_KEYS = ('r2', 'rmse', 'rpd', 'rpiq', 'bias')
METRIC_LABELS = ('R²', 'RMSE', 'RPD', 'RPIQ', 'bias')


def comparison_rows(results, written):
    rows = []
    for result in results:
        marker = ' (written)' if result is written else ''
        rows.append([MODEL_NAMES[result.model_type] + marker]
                    + [getattr(result.train, key) for key in METRIC_KEYS]
                    + [getattr(result.test, key) for key in METRIC_KEYS])
    return rows


def scatter_figure(results, train_y, test_y, units):
    figure, axes = page.new_figure(4.2 * len(results), 4.2)
    figure.clear()
    for position, result in enumerate(results):
        axis = figure.add_subplot(1, len(results), position + 1)
        axis.scatter(train_y, result.train_predicted, s=10, c='0.6', label='train')
        axis.scatter(test_y, result.test_predicted, s=12, c='tab:red', label='test')
        values = np.concatenate([train_y, test_y, result.train_predicted, result.test_predicted])
        low, high = float(values.min()), float(values.max())
        axis.plot([low, high], [low, high], 'k--', linewidth=1, label='1:1')
        axis.set_title(f'{MODEL_NAMES[result.model_type]}\ntrain R² {result.train.r2:.3f} RPD '
                       f'{result.train.rpd:.2f}; test R² {result.test.r2:.3f} RPD {result.test.rpd:.2f}',
                       fontsize=8)
        axis.set_xlabel(f'measured {units}'.strip())
        axis.set_ylabel(f'predicted {units}'.strip())
        axis.set_aspect('equal', adjustable='datalim')
        axis.legend(fontsize=7)
    return page.figure_html(figure, 'predicted against measured')


def loss_figure(losses):
    figure, axis = page.new_figure(6, 3)
    window = max(1, losses.size // 100)
    smooth = np.convolve(losses, np.ones(window) / window, mode='valid')
    axis.semilogy(np.arange(smooth.size) + window, smooth)
    axis.set_xlabel('iteration')
    axis.set_ylabel(f'mini-batch MSE (standardised, mean of {window})')
    return page.figure_html(figure, 'CNN training loss')


def split_figure(x, y, split):
    figure, axis = page.new_figure(5, 5)
    axis.scatter(x[split.train], y[split.train], s=8, c='0.6', label='train')
    axis.scatter(x[split.test], y[split.test], s=10, c='tab:red', label='test')
    size = split.description.get('block_size')
    if size:
        for low, high, draw in ((x.min(), x.max(), axis.axvline), (y.min(), y.max(), axis.axhline)):
            for edge in np.arange(np.floor(low / size), np.floor(high / size) + 2) * size:
                draw(edge, color='0.7', linewidth=0.6, zorder=0)
    axis.set_aspect('equal', adjustable='datalim')
    axis.set_xlabel('x (map units)')
    axis.set_ylabel('y (map units)')
    axis.legend(fontsize=7)
    return page.figure_html(figure, 'train/test split')


def write_training_report(path, title, data, results, written, split, notes=()):
    """data: dict with x, y, target (arrays), feature_names, target_field, target_units."""
    target, units = data['target'], data['target_units']
    headers = (['model'] + [f'train {label}' for label in METRIC_LABELS]
               + [f'test {label}' for label in METRIC_LABELS])
    summary = ''.join(page.paragraph(text) for text in (
        f'Written model: {MODEL_NAMES[written.model_type]}, selected as '
        + ('the one with the lowest test RMSE.' if len(results) > 1 else 'requested.'),
        f'Target: {data["target_field"]} {units}'.rstrip() + '. Features (model input order): '
        + ', '.join(data['feature_names']) + '.',
        f'{split.train.size} training and {split.test.size} test samples.',
        *notes))
    sections = [
        ('Summary', summary),
        ('Accuracy (RPD = SD/RMSE, RPIQ = IQR/RMSE, bias = mean(predicted - measured))',
         page.table_html(headers, comparison_rows(results, written))
         + page.paragraph(PAPER_NOTE, 'note')),
        ('Predicted against measured',
         scatter_figure(results, target[split.train], target[split.test], units)),
    ]
    for result in results:
        if result.model_type == 'cnn':
            architecture = result.model.config.architecture(result.model.side)
            sections.append(('CNN training loss', loss_figure(result.model.losses)
                             + page.paragraph(architecture, 'note') + page.paragraph(CNN_CHOICES, 'note')))
    sections.append(('Train/test split', split_figure(data['x'], data['y'], split)
                     + f'<pre>{html.escape(json.dumps(split.description, indent=1))}</pre>'))
    return page.write_report(path, title, sections)
