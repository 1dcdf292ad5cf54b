"""The nurses' worklist: routes, the page, its models and view, dev sign-in, and mounting it."""
