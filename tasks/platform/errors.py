"""The one error type a user sees for bad input: it names the file, key or value."""


class ReprolabError(ValueError):
    """Bad input (params, artifact, CLI argument). The message names the offending thing."""


class ParamsError(ReprolabError):
    """``params.yaml`` (or an override) failed validation; raised before any work starts."""


class ArtifactError(ReprolabError):
    """A missing, corrupted or schema-mismatched artifact file."""
