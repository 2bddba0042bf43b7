"""From a trained checkpoint to a retrieval service: embed image collections
(:mod:`~rcdml.deploy.embed`), build and search faiss indexes (:mod:`~rcdml.deploy.index`,
:mod:`~rcdml.deploy.search`), export the network for serving (:mod:`~rcdml.deploy.export`) and
draw what it retrieves (:mod:`~rcdml.monitor.pictures`)."""
