"""Vote finished runs into a submission: methods, honest (nested) CV, run loading, submission files."""
