"""Study reports: runs read back from MLflow, markdown, seaborn figures, published references."""
