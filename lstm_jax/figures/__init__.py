"""Figures a task logs with its run (`Task.media`), drawn from arrays: no model, no data
loading. Each figure is a stand-alone matplotlib Figure (not registered with pyplot, so
nothing leaks between calls)."""
