"""Problem definitions, installed as `kanpde.problems`; every module here is registered on import."""
