"""Hub evaluate Space entry point: the standard widget around the ALOE module."""

import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("aloe-bench/aloe", module_type="measurement")
launch_gradio_widget(module)
