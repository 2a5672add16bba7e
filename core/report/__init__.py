"""Self-contained HTML reports with embedded matplotlib figures, shared by every method's report.
The bottom layer with raster/: imports no other subpackage."""
