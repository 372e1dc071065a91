"""The pure core: no controller runtime, web framework, socket or wall clock. Time comes in as `now`."""
