"""The satellite's audio front end: the mic's audio through a chain of stages."""
