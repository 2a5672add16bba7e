"""HTML report pieces shared by the `variogram` and `kriging` algorithms (matplotlib plots, tables)."""
from dataclasses import replace

import numpy as np

from ..report import page
from .variogram import WEIGHTINGS


def gstat_equivalent(model):
    """The model in gstat's vgm() terms (its exponential/gaussian range parameters differ; the
    measurement error is an "Err" component added to the rest of the nugget)."""
    if model.error_variance:
        rest = replace(model, nugget=model.nugget - model.error_variance, error_variance=0.0)
        return gstat_equivalent(rest)[:-1] + f', add.to = vgm({model.error_variance:.6g}, "Err"))'
    if model.name == 'exponential':
        return f'vgm({model.psill:.6g}, "Exp", {model.range / 3.0:.6g}, {model.nugget:.6g})'
    if model.name == 'gaussian':
        return f'vgm({model.psill:.6g}, "Gau", {model.range * 4.0 / 7.0:.6g}, {model.nugget:.6g})'
    if model.name == 'linear':
        return f'vgm({model.psill / model.range:.6g}, "Lin", 0, {model.nugget:.6g})'
    if model.name == 'power':
        scale = model.psill / model.range ** model.exponent
        return f'vgm({scale:.6g}, "Pow", {model.exponent:.6g}, {model.nugget:.6g})'
    return f'vgm({model.psill:.6g}, "Sph", {model.range:.6g}, {model.nugget:.6g})'


def model_table(model):
    rows = [('model', model.name), ('nugget', model.nugget), ('partial sill', model.psill),
            ('total sill (nugget + partial sill)', model.sill), ('range (map units)', model.range)]
    if model.name == 'power':
        rows.append(('exponent', model.exponent))
    if model.error_variance:
        rows.append(('of the nugget: measurement-error variance', model.error_variance))
    rows.append(('gstat equivalent', gstat_equivalent(model)))
    return page.table_html(['parameter', 'value'], rows, digits=6)


def variogram_figure(experimental, models):
    """Experimental semivariances (marker area ∝ pair count, counts printed) and model curves."""
    figure, axes = page.new_figure(6.5, 4.2)
    sizes = 20 + 180 * experimental.pairs / experimental.pairs.max()
    axes.scatter(experimental.distance, experimental.gamma, s=sizes, color='#333', zorder=3,
                 label='experimental (area ∝ pairs)')
    for h, gamma, pairs in zip(experimental.distance, experimental.gamma, experimental.pairs):
        axes.annotate(str(int(pairs)), (h, gamma), textcoords='offset points', xytext=(0, 7), fontsize=7,
                      ha='center', color='#555')
    h = np.linspace(0, experimental.cutoff, 300)
    for label, model in models:
        axes.plot(h, model(h), label=label)
    axes.set_xlim(0, experimental.cutoff * 1.02)
    axes.set_ylim(0, None)
    axes.set_xlabel('distance (map units)')
    axes.set_ylabel('semivariance')
    axes.legend(fontsize=8, loc='lower right')
    return page.figure_html(figure, 'experimental variogram and fitted model')


def experimental_table(experimental):
    rows = [(index + 1, int(n), float(h), float(g)) for index, (n, h, g) in
            enumerate(zip(experimental.pairs, experimental.distance, experimental.gamma))]
    return page.table_html(['lag', 'pairs', 'mean distance', 'semivariance'], rows, digits=6)


def candidates_table(results, chosen):
    rows = [(('* ' if model == chosen else '') + model.name, model.nugget, model.psill, model.range,
             stats['ME'], stats['RMSE'], stats['R2'], stats['MSDR']) for model, stats in results]
    return page.table_html(['model (* chosen)', 'nugget', 'partial sill', 'range', 'LOO ME', 'LOO RMSE',
                            'LOO R²', 'LOO MSDR'], rows)


def fit_note(experimental, weighting=None, on_residuals=False):
    """How the variogram was obtained; `weighting` None: the model was given, not fitted."""
    what = 'residuals of the least-squares drift fit' if on_residuals else 'values'
    fit = (f'Fit: weighted least squares, weights {WEIGHTINGS[weighting][1]}.' if weighting
           else 'The model was given, not fitted.')
    return page.paragraph(
        f'Experimental variogram of the {what}: {len(experimental)} lags of width '
        f'{experimental.width:.6g} up to {experimental.cutoff:.6g} map units (gstat binning). {fit} '
        'Ranges are practical ranges (see the gstat equivalent).', 'note')


def bound_warnings_html(warnings):
    """The fit's bound warnings (VariogramFit.warnings), one paragraph each."""
    return ''.join(page.paragraph(f'Warning: {text}', 'warning') for text in warnings)


def statistics_table(statistics):
    rows = [('samples', statistics['n']), ('ME (mean of observed - predicted)', statistics['ME']),
            ('RMSE', statistics['RMSE']), ('R²', statistics['R2']),
            ('MSDR (mean squared residual / variance, ideally 1)', statistics['MSDR'])]
    return page.table_html(['statistic', 'value'], rows, digits=5)


def cross_validation_figure(cv):
    """Observed against leave-one-out predicted values, with the 1:1 line."""
    figure, axes = page.new_figure(4.8, 4.4)
    axes.scatter(cv.observed, cv.predicted, s=12, alpha=0.7)
    low = float(np.nanmin([cv.observed.min(), np.nanmin(cv.predicted)]))
    high = float(np.nanmax([cv.observed.max(), np.nanmax(cv.predicted)]))
    axes.plot([low, high], [low, high], color='#a40', linewidth=1, label='1:1')
    axes.set_xlabel('observed')
    axes.set_ylabel('leave-one-out prediction')
    axes.legend(fontsize=8)
    return page.figure_html(figure, 'leave-one-out predictions against observed values')
