// Learn more about source functions API at
// https://segment.com/docs/connections/sources/source-functions

/**
 * Handle incoming HTTP request
 *
 * @param  {FunctionRequest} request
 * @param  {FunctionSettings} settings
 */
async function onRequest(request, settings) {
	const body = request.json();

	// filter out events that are not reported on a customer
	if (!body.customer || !body.customer.id) {
		return;
	}

	// See https://segment.com/docs/connections/spec/track/
	Segment.track({
		event: body.type.split('.').join('_'),
		userId: body.customer.id,
		properties: body
	});
}
