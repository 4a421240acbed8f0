"""Changes to devices, the suppression list and the delivery log; one module per kind of
change (the pipeline's sending lives beside them)."""
