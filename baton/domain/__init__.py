"""The pydantic vocabulary shared by the API, workflows and activities. No I/O here: workflow
code imports these modules inside Temporal's sandbox."""
