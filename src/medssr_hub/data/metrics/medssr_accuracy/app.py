"""The Space's widget, as every `evaluate` metric Space has one."""

import evaluate
from evaluate.utils import launch_gradio_widget

launch_gradio_widget(evaluate.load("medssr_accuracy"))
