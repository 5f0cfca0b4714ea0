"""The process nodes: their Node specs and the agent that runs their pods as processes."""
