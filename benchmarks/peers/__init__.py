"""Real peers for SIP benchmarks and integration tests: each started on free ports in the
foreground, under a timeout, in its own process group, and stopped by its PID only.

* :mod:`.procs`      free ports, CPU time of a process tree, stopping what we started
* :mod:`.kamailio`   Kamailio 5.6 with a given configuration (reference proxy or MAM front end)
* :mod:`.controller` ``ryu-manager ryu_apps.mam_app`` (the controller, REST API) and the
                     project's standalone SIP proxy
* :mod:`.sipp`       SIPp UAS / UAC runs and their statistics
"""
