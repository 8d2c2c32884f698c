"""nlp: intent engines for the conversation service, one module per engine (`nlp.rules`, ...).

No module imports this factory by name: dialog.engine loads `nlp.<engine>` with a computed
importlib.import_module name, which static import analysis (`minimal-factories`) cannot see. The
operator config keeps `nlp` in the conversation service's factories for that reason."""
