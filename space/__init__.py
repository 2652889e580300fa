"""The Gradio Space: chat as a persona and watch per-turn alignment scores."""
