"""picharge as other projects' test target: a simulated charger a test suite starts and
drives (:mod:`.charger`) and the pytest plugin that hands one to a test
(:mod:`.pytest_plugin`, registered as the ``pytest11`` entry point ``picharge``)."""
