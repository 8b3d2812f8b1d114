"""Results as data: one typed, scored table over result directories (``analysis.table``), the
declared views over it (``analysis.views``) and the statistics every view uses
(``analysis.stats``). Imports pandas, pyarrow, scipy and statsmodels; never torch or Ray."""
