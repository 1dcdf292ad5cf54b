"""FastAPI application: EHR intake, worklist, audit and pathway routes."""
