"""Using a saved model: prediction and evaluation (:mod:`.predict`) and explanations
(:mod:`.explain`, :mod:`.attribution`, :mod:`.explain_plot`)."""
