"""Principal component analysis of image bands: fit on a uniform sample of valid pixels, apply
block by block.

The fit uses numpy.linalg.eigh on the bands x bands covariance (or correlation) matrix of the
sample: the matrix is tiny whatever the image size, eigh is exact and deterministic for symmetric
matrices, it returns every component at once so N components or a variance target can be chosen
after one fit, and it needs no optional package (scikit-learn's PCA gives the same result through
an SVD of the centred sample). Richards & Jia, Remote Sensing Digital Image Analysis, ch. 6.
"""
import html
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..linalg import matmul


class PixelSampler:
    """Uniform random sample without replacement of at most `size` pixel vectors, fed block by
    block: each pixel gets a uniform random key and the `size` smallest keys are kept (bottom-k
    sampling), so memory stays at one sample plus one block and all pixels are kept when fewer."""

    def __init__(self, size, seed=1):
        self.size = int(size)
        self.rng = np.random.default_rng(seed)
        self.values = None
        self.keys = np.empty(0)
        self.seen = 0

    def add(self, pixels):
        """`pixels`: (n, bands) array of valid pixel vectors."""
        pixels = np.asarray(pixels, dtype=np.float64)
        self.seen += len(pixels)
        keys = np.concatenate([self.keys, self.rng.random(len(pixels))])
        values = pixels if self.values is None else np.concatenate([self.values, pixels])
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[:self.size]
            keys, values = keys[keep], values[keep]
        self.keys, self.values = keys, values

    def sample(self):
        return self.values if self.values is not None else np.empty((0, 0))


@dataclass(frozen=True)
class PcaModel:
    mean: np.ndarray        # per band, input units
    scale: np.ndarray       # per band: standard deviation when standardised, else 1
    vectors: np.ndarray     # (bands, components) unit eigenvectors, columns by decreasing variance
    eigenvalues: np.ndarray  # variance of each component (input units squared, or unitless)
    n_samples: int
    standardized: bool

    @property
    def explained_ratio(self):
        return self.eigenvalues / self.eigenvalues.sum()

    def transform(self, pixels, components):
        """Scores (n, components) of pixel vectors (n, bands)."""
        return matmul((pixels - self.mean) / self.scale, self.vectors[:, :components])


def fit_pca(samples, standardize=False, parameter=None, band_names=None):
    """PcaModel of the sample (n, bands); sample covariance with n-1 (ddof=1).

    Eigenvector signs are fixed so that each component's largest absolute coefficient is positive
    (as scikit-learn's svd_flip does), so results do not flip between runs.
    """
    samples = np.asarray(samples, dtype=np.float64)
    count = len(samples) if samples.size else 0
    bands = samples.shape[1] if count else len(band_names or ())
    if count < max(bands + 1, 3):
        raise InputError(f'only {count} valid pixels for {bands} bands; a PCA needs at least '
                         f'{max(bands + 1, 3)} pixels with data in every band (check the nodata value and '
                         'the mask).', parameter)
    mean = samples.mean(axis=0)
    scale = np.ones(bands)
    spread = samples.std(axis=0, ddof=1)
    constant = [str((band_names or range(1, bands + 1))[i]) for i in np.flatnonzero(spread == 0)]
    if constant and (standardize or len(constant) == bands):
        raise InputError(f'band(s) {", ".join(constant)} are constant over the valid pixels; leave them '
                         'out with BANDS.', parameter)
    if standardize:
        scale = spread
    covariance = np.atleast_2d(np.cov((samples - mean) / scale, rowvar=False))
    eigenvalues, vectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = np.clip(eigenvalues[order], 0.0, None), vectors[:, order]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(bands)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    return PcaModel(mean, scale, vectors, eigenvalues, count, bool(standardize))


def component_count(explained_ratio, components=0, variance_target=1.0, parameter=None):
    """`components` when > 0, else the fewest components whose cumulative explained variance
    reaches `variance_target` (fraction 0..1)."""
    total = len(explained_ratio)
    if components:
        if components > total:
            raise InputError(f'{components} components asked for but only {total} bands; choose at most '
                             f'{total}.', parameter)
        return int(components)
    cumulative = np.cumsum(explained_ratio)
    return int(min(total, np.searchsorted(cumulative, variance_target - 1e-12) + 1))


def component_summary(vectors, band_names, component, top=3):
    """'+ B8 0.62, B7 0.45; - B4 -0.51': the bands that weigh most in one component."""
    coefficients = vectors[:, component]
    order = np.argsort(-np.abs(coefficients))[:top]
    positive = [f'{band_names[i]} {coefficients[i]:.2f}' for i in order if coefficients[i] > 0]
    negative = [f'{band_names[i]} {coefficients[i]:.2f}' for i in order if coefficients[i] < 0]
    return '; '.join(part for part in (('+ ' + ', '.join(positive)) if positive else '',
                                       ('- ' + ', '.join(negative)) if negative else '') if part)


def table_rows(model, band_names, kept):
    """One row per component: name, eigenvalue, % variance, cumulative %, written to the output
    raster (bool), then the eigenvector coefficient of each band."""
    ratio = model.explained_ratio
    cumulative = np.cumsum(ratio)
    return [[f'PC{i + 1}', float(model.eigenvalues[i]), float(100 * ratio[i]), float(100 * cumulative[i]),
             i < kept, *(float(value) for value in model.vectors[:, i])] for i in range(len(ratio))]


def report_sections(model, band_names, kept, settings):
    """(heading, html) sections of the PCA report: settings, table, scree plot, coefficient map."""
    from ..report.page import figure_html, new_figure, paragraph, table_html
    rows = table_rows(model, band_names, kept)
    ratio = 100 * model.explained_ratio
    components = [row[0] for row in rows]
    figure, axis = new_figure(6, 3.5)
    axis.bar(components, ratio, color='#4a7ab0', label='explained variance (%)')
    axis.plot(components, np.cumsum(ratio), 'o-', color='#b04a4a', label='cumulative (%)')
    axis.axvline(kept - 0.5, color='grey', linestyle=':')
    axis.set_ylabel('% of total variance')
    axis.legend()
    scree = figure_html(figure, 'scree plot')
    shown = min(len(components), 12)
    figure, axis = new_figure(1.2 + 0.6 * shown, 0.8 + 0.35 * len(band_names))
    image = axis.imshow(model.vectors[:, :shown], cmap='RdBu_r', vmin=-1, vmax=1, aspect='auto')
    axis.set_xticks(range(shown), components[:shown])
    axis.set_yticks(range(len(band_names)), band_names)
    figure.colorbar(image, ax=axis, label='eigenvector coefficient')
    heatmap = figure_html(figure, 'coefficients')
    summaries = (f'{name}: {component_summary(model.vectors, band_names, i)}'
                 for i, name in enumerate(components[:shown]))
    meaning = ''.join(f'<li>{html.escape(summary)}</li>' for summary in summaries)
    headers = ['component', 'eigenvalue', 'variance %', 'cumulative %', 'in output', *band_names]
    return [
        ('Settings', paragraph(settings)),
        ('Explained variance and coefficients', table_html(headers, rows) + paragraph(
            'Coefficients are the unit eigenvectors: score = sum over bands of coefficient x (band - mean)'
            + (' / standard deviation' if model.standardized else '') + '. Signs are arbitrary per '
            'component; here the largest coefficient is positive.', 'note')),
        ('Scree plot', scree),
        ('What each component carries', heatmap + f'<ul>{meaning}</ul>'),
    ]
