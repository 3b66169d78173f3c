"""The logged model's entry point (MLflow "models from code"): MLflow runs this file when it loads the model.

Not meant to be imported: it only hands ``OneThinkerPyfunc`` to ``mlflow.models.set_model`` (so nothing is
pickled; the class comes from the ``onethinker`` package shipped in the model's ``code_paths``).
"""

import mlflow.models

from onethinker.registry.pyfunc import OneThinkerPyfunc

mlflow.models.set_model(OneThinkerPyfunc())
