"""Imports the index's services from their WSDL URLs alone with zeep (a real SOAP
client library), sends an Update and a FindContent, and prints what came back as JSON.

usage: zeep_client.py BASE_URL
"""
import json
import sys

import requests
from zeep import Client, Settings
from zeep.transports import Transport

base = sys.argv[1]
session = requests.Session()
session.headers["x-skltp-correlation-id"] = "zeep-test"
transport = Transport(session=session)
settings = Settings(strict=True)

update = Client(f"{base}/skltp-ei/update-service/v1?wsdl", transport=transport, settings=settings)
find = Client(f"{base}/skltp-ei/find-content-service/v1?wsdl", transport=transport, settings=settings)

engagement = {
    "registeredResidentIdentification": "191212121212",
    "serviceDomain": "riv:clinicalprocess:healthcond:description",
    "categorization": "voo",
    "logicalAddress": "SE2321000016-15CQ",
    "businessObjectInstanceIdentifier": "NA",
    "clinicalProcessInterestId": "NA",
    "mostRecentContent": "20240102030405",
    "sourceSystem": "SE2321000016-15CQ",
    "dataController": "SE2321000016-A12B",
}
result = update.service.Update(
    engagementTransaction=[{"deleteFlag": False, "engagement": engagement}],
    _soapheaders={"LogicalAddress": "5565594230"},
)
answer = {"update": result.ResultCode}

found = find.service.FindContent(
    registeredResidentIdentification="191212121212",
    serviceDomain="riv:clinicalprocess:healthcond:description",
    _soapheaders={"LogicalAddress": "5565594230"},
)
items = found.engagement if hasattr(found, "engagement") else found
answer["found"] = [
    {
        "categorization": e.categorization,
        "owner": e.owner,
        "mostRecentContent": e.mostRecentContent,
        "creationTime": e.creationTime,
    }
    for e in items
]
try:
    update.service.Update(
        engagementTransaction=[{"deleteFlag": False, "engagement": engagement}] * 2,
        _soapheaders={"LogicalAddress": "5565594230"},
    )
    answer["fault"] = None
except Exception as err:  # zeep.exceptions.Fault
    answer["fault"] = str(err)
print(json.dumps(answer))
