"""The bundled data sets (CSV), installed as the package mlpbp.datasets; see README.md here."""
