"""HTML report of a Laplacian-pyramid fusion: settings, regressions per cluster, coherence with the
coarse grid, agreement with a reference layer, and maps of input, fused and difference."""
import numpy as np

from ..report.page import figure_html, map_frame, new_figure, paragraph, table_html, write_report
from .model import NONLINEAR_PENALTY

PAPER = 'Remote Sens. 2023, 15, 1993 (Laplacian pyramid + multiple linear regression fusion)'


def _map(array, title, grid, cmap='viridis', symmetric=False):
    figure, axes = new_figure(5.0, 4.2)
    finite = array[np.isfinite(array)]
    limits = {}
    if finite.size and symmetric:
        bound = float(np.percentile(np.abs(finite), 99)) or 1.0
        limits = dict(vmin=-bound, vmax=bound)
    elif finite.size:
        limits = dict(vmin=float(np.percentile(finite, 1)), vmax=float(np.percentile(finite, 99)))
    xmin, ymin, xmax, ymax = grid.extent
    image = axes.imshow(np.ma.masked_invalid(array), cmap=cmap, interpolation='nearest',
                        extent=(xmin, xmax, ymin, ymax), **limits)
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_title(title)
    map_frame(axes, (xmin, xmax, ymin, ymax), grid.crs_wkt)
    return figure_html(figure, title)


FORMULAS = {
    ('paper', False): 'fused = Geo_Lre + Geo_Hre = (a0 + a·MS_L) + (Geo_H + a·MS_H); the article\'s '
                      'Eq. 2 adds a0 to the high frequency too, which would count it twice, so it is '
                      'left out there',
    ('coherent', False): 'fused = Geo + a·MS_H (measured low frequency kept)',
    ('paper', True): 'fused = F(MS) + Geo_H (the paper\'s formula with the nonlinear regression F)',
    ('coherent', True): 'fused = F(MS) + cubic(coarse − F averaged onto the cells), repeated by the '
                        'residual passes (at least one)',
}


def _stats_rows(stats_by_name):
    return [[name, stats['n'], stats['r'], stats['rmse'], stats['bias'], stats['max_abs']]
            for name, stats in stats_by_name.items()]


def _estimator(model):
    if model.basis is not None:
        return (f'nonlinear: ridge (penalty {NONLINEAR_PENALTY:g} on standardised features) on '
                f'{len(model.feature_names)} features of the bands (quadratic terms and hinges), fitted on '
                'the features averaged over the coarse cells (or smoothed by the pyramid)')
    if model.noise is None:
        return 'least squares (paper)'
    noise = ', '.join(f'{name} {value:.4g}' for name, value in zip(model.band_names, model.noise))
    return f'ridge, penalty = image noise variance (noise SD per band: {noise} image units)'


def regression_rows(model):
    """One row per fit: cluster, pixels, R², intercept, slopes..., status (also the table output)."""
    rows = []
    for fit in model.fits:
        rows.append([fit.cluster, fit.n, fit.r2, fit.intercept, *fit.coefficients, fit.status])
    if len(model.fits) > 1:
        fit = model.global_fit
        rows.insert(0, [0, fit.n, fit.r2, fit.intercept, *fit.coefficients, 'global (reference)'])
    return rows


def write_fusion_report(path, result, settings, inputs, log_lines=()):
    """`inputs`: dict of display names (grid, image, bands, mask, reference)."""
    grids, model = result.grids, result.model
    formula = FORMULAS[settings.mode, model.basis is not None]
    setting_rows = [
        ['geochemical grid', inputs.get('grid', '')], ['image', inputs.get('image', '')],
        ['bands', ', '.join(model.band_names)], ['mask', inputs.get('mask') or 'none'],
        ['mode', f'{settings.mode}: {formula}'],
        ['regression', 'global' if settings.clusters < 2 else
         f'local, {settings.clusters} K-means clusters of '
         + (f'image bands {", ".join(map(str, settings.cluster_bands))}' if settings.cluster_bands
            else 'the regression bands')],
        ['estimator', _estimator(model)],
        ['resolution ratio (coarse/fine pixel)', grids.ratio],
        ['pyramid levels (halo px)', f'{result.levels} ({2 * (2 ** result.levels - 1)})'],
        ['coarse grid reprojected', 'yes (bilinear)' if grids.reprojected else 'no'],
        ['residual correction iterations', settings.residual_iterations],
    ]
    sections = [('Method', paragraph(
        f'Method of {PAPER}: the coarse grid is resampled by cubic convolution to the image grid, '
        'image bands and grid are split into low (L) and high (H) frequencies by an undecimated '
        'Laplacian pyramid, Geo_L is regressed on MS_L (globally or per K-means '
        'cluster) and the slopes a inject the image detail MS_H.')),
        ('Settings', table_html(['setting', 'value'], setting_rows))]
    slopes = [f'a ({name})' for name in model.feature_names]
    headers = ['cluster', 'pixels', 'R² (low freq.)', 'intercept a0', *slopes, 'status']
    fragment = table_html(headers, regression_rows(model))
    fragment += paragraph('R² is that of Geo_L ~ MS_L on the fit sample; cluster 0 is the global '
                          'regression. Slopes are in grid units per image unit; the ridge estimator '
                          'trades a little R² for slopes that do not amplify image noise.', 'note')
    sections.append(('Regression', fragment))
    if result.warnings:
        sections.append(('Warnings', ''.join(paragraph(text, 'warning') for text in result.warnings)))
    stat_headers = ['map', 'cells', 'r', 'RMSE', 'bias', 'max |error|']
    fragment = table_html(stat_headers, _stats_rows({'fused, averaged to the coarse cells': result.coherence,
                                                     'cubic resampling, averaged': result.cubic_coherence}))
    fragment += paragraph('Coherence: the fused map averaged back onto the coarse cells that lie wholly '
                          'inside the image, against the input grid (grid units). A coherent result '
                          'reproduces the input (RMSE 0).', 'note')
    sections.append(('Coherence with the input grid', fragment))
    if result.reference:
        fragment = table_html(stat_headers, _stats_rows({'fused': result.reference['fused'],
                                                         'cubic resampling': result.reference['cubic']}))
        fragment += paragraph(f'Against the reference layer {inputs.get("reference", "")} on its own grid '
                              f'({result.reference["resampling"]} resampling of the maps); the paper '
                              'reports this correlation with a finer survey (its Table 3).', 'note')
        sections.append(('Reference check', fragment))
    layers = result.preview
    maps = _map(layers['cubic'], 'input grid (cubic resampling)', grids.image)
    maps += _map(layers['fused'], 'fused', grids.image)
    maps += _map(layers['fused'] - layers['cubic'], 'fused − input', grids.image, cmap='RdBu_r',
                 symmetric=True)
    if settings.clusters >= 2:
        maps += _map(layers['clusters'], 'K-means clusters', grids.image, cmap='tab20')
    sections.append(('Maps', maps))
    if log_lines:
        sections.append(('Log', ''.join(paragraph(line) for line in log_lines)))
    return write_report(path, 'Laplacian pyramid fusion', sections)
