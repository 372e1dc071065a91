"""The H.323 gatekeeper: RAS and gatekeeper-routed call signalling feeding admission
(docs/h323.md). ``gatekeeper.Gatekeeper`` is the sans-IO core; ``hub_server`` runs it in
the controller, ``standalone`` on its own. pycrate is imported only when it is used."""
