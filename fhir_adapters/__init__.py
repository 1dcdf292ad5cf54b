"""FHIR R4 client, authentication, and mapping between EHR resources and engine facts."""
