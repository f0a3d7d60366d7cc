"""A trivial Linux-category plugin: volatility start-up cost on an image, for the benchmark."""

from volatility3.framework import interfaces, renderers
from volatility3.framework.configuration import requirements


class Nop(interfaces.plugins.PluginInterface):
    """Stacks the image like the pkram plugins do and returns one row."""

    _required_framework_version = (2, 0, 0)

    @classmethod
    def get_requirements(cls):
        return [requirements.TranslationLayerRequirement(name="primary", description="Memory layer")]

    def run(self):
        layer = self.context.layers[self.config["primary"]]
        return renderers.TreeGrid([("Layer", str), ("MaxAddress", int)],
                                  iter([(0, (type(layer).__name__, layer.maximum_address))]))
