"""The server-rendered pages and downloads (``routes``), the results page's view models (``views``,
``results_page``), its extension panels (``panels``) and the templates' environment (``templating``)."""
