"""One patient's pathway at a glance: the timeline API and page, and its pseudonymised audit form."""
